"""Contracts of unique jobs (``Capabilities.unique``) and recurring ticks
(``RecurringStore``)."""

from __future__ import annotations

import functools
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

import pytest

from queuebox.backends.base import Adapter, RecurringStore
from queuebox.testing.support import (
    AdapterFactory,
    StoreFixtures,
    claim_one,
    fork,
    new_job,
    wait_all,
)

__all__ = ["RecurringStoreContract", "UniqueJobsContract"]


class RecurringAdapter(Adapter, RecurringStore):
    """For type checking only: an adapter that declares ``RecurringStore``."""


class UniqueJobsContract(StoreFixtures):
    """``NewJob.unique_key`` for stores that declare ``Capabilities(unique=True)``."""

    @pytest.fixture
    def unique_adapter(self, adapter: Adapter) -> Adapter:
        if not adapter.capabilities.unique:
            pytest.skip("the adapter declares unique=False")
        return adapter

    def test_unique_key_returns_the_waiting_job(self, unique_adapter: Adapter) -> None:
        adapter = unique_adapter
        first = adapter.schedule_one(new_job(args=[1], unique_key="report:7"))
        second = adapter.schedule_one(new_job(args=[2], unique_key="report:7"))
        other = adapter.schedule_one(new_job(args=[3], unique_key="report:8"))
        plain = adapter.schedule([new_job(args=[4]), new_job(args=[4])])
        elsewhere = adapter.schedule_one(new_job("other-queue", unique_key="report:7"))
        assert first.unique_key == "report:7"
        assert second.id == first.id and json.loads(second.handler)["args"] == [1]
        assert other.id != first.id and plain[0].id != plain[1].id
        assert elsewhere.id != first.id, "unique keys are per queue"
        assert sum(c.total for c in adapter.counts()) == 5

    def test_unique_key_within_one_batch(self, unique_adapter: Adapter) -> None:
        records = unique_adapter.schedule(
            [new_job(unique_key="k"), new_job(), new_job(unique_key="k")]
        )
        assert records[0].id == records[2].id != records[1].id
        assert sum(c.total for c in unique_adapter.counts()) == 2

    def test_unique_keys_across_a_large_batch(self, unique_adapter: Adapter) -> None:
        """1,200 jobs over 700 keys, one of them held before: a key's first job in the call
        stores it (or finds the holder), every later one gets that record, wherever the
        store's statement and transaction boundaries fall in between."""
        adapter = unique_adapter
        held = adapter.schedule_one(new_job(args=["held"], unique_key="key:3"))
        jobs = [new_job(args=[index], unique_key=f"key:{index % 700}") for index in range(1200)]
        jobs[10] = new_job(args=[10])  # no key, in between
        records = adapter.schedule(jobs)
        first: dict[str, str] = {}
        for index, (job, record) in enumerate(zip(jobs, records, strict=True)):
            if job.unique_key is None:
                assert json.loads(record.handler)["args"] == [index]
                continue
            owner = first.setdefault(job.unique_key, record.id)
            assert record.id == owner and record.unique_key == job.unique_key
        assert first["key:3"] == held.id
        assert sum(c.total for c in adapter.counts()) == 700 + 1
        assert [adapter.get(record.id) for record in records[:700]] == records[:700]

    def test_unique_key_is_held_while_running_and_retrying(self, unique_adapter: Adapter) -> None:
        adapter = unique_adapter
        record = adapter.schedule_one(new_job(unique_key="k"))
        claimed = claim_one(adapter)
        assert adapter.schedule_one(new_job(unique_key="k")).id == record.id
        adapter.reschedule(record.id, claimed.lock_token or "", delay=60, error="E")
        assert adapter.schedule_one(new_job(unique_key="k")).id == record.id
        assert sum(c.total for c in adapter.counts()) == 1

    @pytest.mark.parametrize("outcome", ["complete", "keep", "fail", "fail-delete", "delete"])
    def test_unique_key_is_freed_when_the_job_ends(
        self, unique_adapter: Adapter, outcome: str
    ) -> None:
        adapter = unique_adapter
        record = adapter.schedule_one(new_job(unique_key="k"))
        token = claim_one(adapter).lock_token or ""
        if outcome == "complete":
            assert adapter.complete(record.id, token)
        elif outcome == "keep":
            if not adapter.capabilities.keep_completed:
                pytest.skip("the adapter declares keep_completed=False")
            assert adapter.complete(record.id, token, keep=True)
        elif outcome == "fail":
            assert adapter.fail(record.id, token, error="E")
        elif outcome == "fail-delete":
            assert adapter.fail(record.id, token, error="E", keep=False)
        else:
            assert adapter.delete(record.id)
        kept = adapter.get(record.id)
        assert kept is None or kept.unique_key is None
        again = adapter.schedule_one(new_job(unique_key="k"))
        assert again.id != record.id and again.unique_key == "k"
        if kept is not None:  # a retried job does not take the key back
            assert adapter.retry(record.id)

    def test_clear_frees_unique_keys(self, unique_adapter: Adapter) -> None:
        first = unique_adapter.schedule_one(new_job("a", unique_key="k"))
        assert unique_adapter.clear(["a"]) == 1
        assert unique_adapter.schedule_one(new_job("a", unique_key="k")).id != first.id

    def test_concurrent_unique_enqueues_store_one_job(
        self, unique_adapter: Adapter, adapter_factory: AdapterFactory, tmp_path: Path
    ) -> None:
        if not unique_adapter.capabilities.multiprocess:
            pytest.skip("the adapter declares multiprocess=False")
        logs = [tmp_path / f"p{n}.log" for n in range(4)]
        pids = [
            fork(functools.partial(_enqueue_unique, adapter_factory, log), log.with_suffix(".err"))
            for log in logs
        ]
        wait_all(pids, logs)
        ids = {line for log in logs for line in log.read_text().split()}
        assert len(ids) == 1, f"one unique key gave several jobs: {ids}"
        assert sum(c.total for c in unique_adapter.counts()) == 1


class RecurringStoreContract(StoreFixtures):
    """``RecurringStore``: each tick of a recurring job is stored once."""

    @pytest.fixture
    def recurring_adapter(self, adapter: Adapter) -> RecurringAdapter:
        if not isinstance(adapter, RecurringStore):
            pytest.skip(f"{type(adapter).__name__} does not declare RecurringStore")
        return cast(RecurringAdapter, adapter)

    def test_each_tick_is_stored_once(self, recurring_adapter: RecurringAdapter) -> None:
        adapter = recurring_adapter
        tick = adapter.now().replace(microsecond=0) - timedelta(minutes=5)
        first = adapter.schedule_tick("Nightly", tick, new_job(run_at=tick))
        assert first is not None and first.run_at == tick
        assert adapter.schedule_tick("Nightly", tick, new_job(run_at=tick)) is None
        earlier = tick - timedelta(minutes=5)
        assert adapter.schedule_tick("Nightly", earlier, new_job(run_at=earlier)) is None
        later = tick + timedelta(minutes=5)
        assert adapter.schedule_tick("Nightly", later, new_job(run_at=later)) is not None
        assert adapter.recurring_ticks() == {"Nightly": later}
        assert sum(c.total for c in adapter.counts()) == 2

    def test_a_tick_can_be_recorded_without_a_job(
        self, recurring_adapter: RecurringAdapter
    ) -> None:
        tick = recurring_adapter.now().replace(microsecond=0)
        assert recurring_adapter.schedule_tick("Hourly", tick, new_job(), store=False) is None
        assert recurring_adapter.recurring_ticks() == {"Hourly": tick}
        assert recurring_adapter.counts() == []

    def test_a_tick_is_skipped_while_the_last_run_holds_its_key(
        self, recurring_adapter: RecurringAdapter
    ) -> None:
        adapter = recurring_adapter
        if not adapter.capabilities.unique:
            pytest.skip("the adapter declares unique=False")
        tick = adapter.now().replace(microsecond=0)
        assert adapter.schedule_tick("Slow", tick, new_job(unique_key="recurring:Slow"))
        later = tick + timedelta(seconds=1)
        assert adapter.schedule_tick("Slow", later, new_job(unique_key="recurring:Slow")) is None
        assert adapter.recurring_ticks()["Slow"] == later
        assert sum(c.total for c in adapter.counts()) == 1

    def test_concurrent_ticks_store_one_job(
        self, recurring_adapter: RecurringAdapter, adapter_factory: AdapterFactory, tmp_path: Path
    ) -> None:
        if not recurring_adapter.capabilities.multiprocess:
            pytest.skip("the adapter declares multiprocess=False")
        tick = recurring_adapter.now().replace(microsecond=0)
        logs = [tmp_path / f"p{n}.log" for n in range(4)]
        pids = [
            fork(
                functools.partial(_schedule_ticks, adapter_factory, tick, log),
                log.with_suffix(".err"),
            )
            for log in logs
        ]
        wait_all(pids, logs)
        stored = [line for log in logs for line in log.read_text().split()]
        assert len(stored) == 5, f"expected one job per tick, got {stored}"
        assert sum(c.total for c in recurring_adapter.counts()) == 5


def _enqueue_unique(adapter_factory: AdapterFactory, log: Path) -> None:
    adapter = adapter_factory()
    with log.open("w") as out:
        for _ in range(25):
            out.write(adapter.schedule_one(new_job(unique_key="race")).id + "\n")
    adapter.close()


def _schedule_ticks(adapter_factory: AdapterFactory, first_tick: datetime, log: Path) -> None:
    adapter = adapter_factory()
    assert isinstance(adapter, RecurringStore)
    with log.open("w") as out:
        for n in range(5):
            tick = first_tick + timedelta(minutes=n)
            record = adapter.schedule_tick("Race", tick, new_job(run_at=tick))
            if record is not None:
                out.write(record.id + "\n")
    adapter.close()
