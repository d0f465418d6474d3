"""The contracts of ``WorkerRegistry`` and ``ThroughputHistory``: what ``queuebox status``
and the dashboard read about workers and throughput."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest

from queuebox.backends.base import (
    RUNTIME_BUCKETS,
    Adapter,
    MinuteStats,
    RunningJob,
    ThroughputHistory,
    WorkerInfo,
    WorkerRegistry,
)
from queuebox.testing.support import AdapterFactory, StoreFixtures, close_to

__all__ = ["ThroughputHistoryContract", "WorkerRegistryContract", "a_worker", "tally"]


class RegistryAdapter(Adapter, WorkerRegistry):
    """For type checking only: an adapter that declares ``WorkerRegistry``."""


class HistoryAdapter(Adapter, ThroughputHistory):
    """For type checking only: an adapter that declares ``ThroughputHistory``."""


def a_worker(worker_id: str, *, host: str = "host-a", jobs: int = 0) -> WorkerInfo:
    started = datetime(2027, 1, 1, 12, tzinfo=UTC)
    return WorkerInfo(
        id=worker_id,
        host=host,
        pid=4242,
        queues=("default", "email"),
        concurrency=8,
        version="0.1.0",
        started_at=started,
        jobs=tuple(
            RunningJob(f"job-{n}", "SendEmail", "email", started + timedelta(seconds=n))
            for n in range(jobs)
        ),
    )


def tally(minute: datetime, queue: str = "q", name: str = "J", **counts: int) -> MinuteStats:
    runtimes = [0] * (len(RUNTIME_BUCKETS) + 1)
    runtimes[3] = counts.get("succeeded", 0)
    return MinuteStats(
        queue,
        name,
        minute,
        succeeded=counts.get("succeeded", 0),
        retried=counts.get("retried", 0),
        failed=counts.get("failed", 0),
        cancelled=counts.get("cancelled", 0),
        runtime_counts=tuple(runtimes),
        runtime_sum=0.02 * counts.get("succeeded", 0),
    )


def _this_minute(adapter: Adapter) -> datetime:
    return adapter.now().replace(second=0, microsecond=0)


class WorkerRegistryContract(StoreFixtures):
    @pytest.fixture
    def registry(self, adapter: Adapter) -> RegistryAdapter:
        if not isinstance(adapter, WorkerRegistry):
            pytest.skip(f"{type(adapter).__name__} does not declare WorkerRegistry")
        return cast(RegistryAdapter, adapter)

    def test_a_beat_records_the_worker(
        self, registry: RegistryAdapter, adapter_factory: AdapterFactory
    ) -> None:
        worker = a_worker("host-a:1:abc", jobs=2)
        registry.beat(worker, ttl=30)
        [seen] = registry.workers()
        assert seen == dataclasses.replace(worker, beat_at=seen.beat_at, lost=False)
        assert close_to(seen.beat_at, registry.now(), 5)
        if registry.capabilities.multiprocess:
            other = adapter_factory()
            try:
                assert isinstance(other, WorkerRegistry)
                assert [w.id for w in other.workers()] == [worker.id], "another process sees it"
            finally:
                other.close()

    def test_a_later_beat_replaces_the_record(self, registry: RegistryAdapter) -> None:
        registry.beat(a_worker("w1", jobs=3), ttl=30)
        first = registry.workers()[0].beat_at
        time.sleep(0.05)
        registry.beat(a_worker("w1", jobs=1), ttl=30)
        [seen] = registry.workers()
        assert len(seen.jobs) == 1 and seen.beat_at is not None and first is not None
        assert seen.beat_at >= first

    def test_workers_of_every_host_are_listed_in_order(self, registry: RegistryAdapter) -> None:
        for worker_id, host in [("b2", "host-b"), ("a1", "host-a"), ("b1", "host-b")]:
            registry.beat(a_worker(worker_id, host=host), ttl=30)
        assert [(w.host, w.id) for w in registry.workers()] == [
            ("host-a", "a1"),
            ("host-b", "b1"),
            ("host-b", "b2"),
        ]

    def test_retire_removes_it(self, registry: RegistryAdapter) -> None:
        registry.beat(a_worker("w1"), ttl=30)
        registry.beat(a_worker("w2"), ttl=30)
        registry.retire("w1")
        registry.retire("never-there")
        assert [w.id for w in registry.workers()] == ["w2"]

    def test_a_silent_worker_is_lost_then_removed(self, registry: RegistryAdapter) -> None:
        registry.lost_kept = 1.0  # (a class attribute: an hour by default)
        registry.beat(a_worker("silent"), ttl=0.3)
        registry.beat(a_worker("alive"), ttl=30)
        time.sleep(0.6)
        lost = {w.id: w.lost for w in registry.workers()}
        assert lost == {"silent": True, "alive": False}
        time.sleep(1.0)
        assert [w.id for w in registry.workers()] == ["alive"]


class ThroughputHistoryContract(StoreFixtures):
    @pytest.fixture
    def history(self, adapter: Adapter) -> HistoryAdapter:
        if not isinstance(adapter, ThroughputHistory):
            pytest.skip(f"{type(adapter).__name__} does not declare ThroughputHistory")
        return cast(HistoryAdapter, adapter)

    def test_tallies_of_one_minute_add_up(self, history: HistoryAdapter) -> None:
        minute = _this_minute(history)
        history.add_stats([tally(minute, succeeded=3, failed=1)])
        history.add_stats([tally(minute, succeeded=2, retried=4, cancelled=1)])
        [stored] = history.stats(since=minute - timedelta(minutes=1))
        assert (stored.succeeded, stored.retried, stored.failed, stored.cancelled) == (5, 4, 1, 1)
        assert stored.runtime_counts[3] == 5 and abs(stored.runtime_sum - 0.1) < 1e-9
        assert stored.minute == minute and stored.queue == "q" and stored.name == "J"

    def test_minutes_queues_and_names_stay_apart_in_order(self, history: HistoryAdapter) -> None:
        now = _this_minute(history)
        earlier = now - timedelta(minutes=5)
        history.add_stats(
            [
                tally(now, "b", "J", succeeded=1),
                tally(now, "a", "K", succeeded=1),
                tally(now, "a", "J", succeeded=1),
                tally(earlier, "a", "J", failed=2),
            ]
        )
        rows = history.stats(since=earlier)
        keys = [(r.minute, r.queue, r.name) for r in rows]
        assert keys == [(earlier, "a", "J"), (now, "a", "J"), (now, "a", "K"), (now, "b", "J")]
        assert [r.queue for r in history.stats(since=earlier, queues=["b"])] == ["b"]
        assert len(history.stats(since=now)) == 3

    def test_minutes_past_retention_are_dropped(self, history: HistoryAdapter) -> None:
        now = _this_minute(history)
        old = now - timedelta(seconds=history.retention + 600)
        history.add_stats([tally(old, succeeded=1), tally(now, succeeded=1)])
        assert [r.minute for r in history.stats(since=old)] == [now]

    def test_concurrent_tallies_are_not_lost(self, history: HistoryAdapter) -> None:
        minute = _this_minute(history)

        def add() -> None:
            for _ in range(20):
                history.add_stats([tally(minute, succeeded=1)])

        threads = [threading.Thread(target=add) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        [stored] = history.stats(since=minute)
        assert stored.succeeded == 80

    def test_a_beat_carries_the_stats(self, history: HistoryAdapter) -> None:
        if not isinstance(history, WorkerRegistry):
            pytest.skip("the adapter does not declare WorkerRegistry")
        minute = _this_minute(history)
        history.beat(a_worker("w1"), ttl=30, stats=[tally(minute, succeeded=7)])
        assert [r.succeeded for r in history.stats(since=minute)] == [7]
        assert [w.id for w in history.workers()] == ["w1"]
