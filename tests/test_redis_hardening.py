"""Defects of the Redis store found from outside (issue 11), each pinned: run times no store
can hold, records the client cannot read, wake-ups across databases, bad URLs. Written once
and run on fakeredis and on a real server where both can show it."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import fakeredis
import msgpack
import pytest
from test_redis_support import fake_redis, in_database, packed_fields, url_with

from queuebox.backends.base import (
    LATEST_RUN_AT,
    UNREADABLE_NAME,
    JobRecord,
    JobState,
    NewJob,
)
from queuebox.backends.redis import RedisAdapter
from queuebox.backends.redis_keys import QueueKeys, parse_job_id
from queuebox.errors import ConfigurationError, InvalidSchedule, ValidationError
from queuebox.testing import new_job

#: A store in database ``n`` of one server, the same key prefix for every ``n``.
StoreIn = Callable[[int], RedisAdapter]


class HardeningChecks:
    """Subclasses provide ``store_in``; ``store`` is database 0."""

    @pytest.fixture
    def store(self, store_in: StoreIn) -> RedisAdapter:
        return store_in(0)

    # -- run times no store can hold: refused before anything is written --------------------

    @pytest.mark.parametrize(
        "bad",
        [
            new_job(run_at=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))),
            new_job(run_at=datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-10)))),
            new_job(run_at=datetime(1969, 12, 31, tzinfo=UTC)),
            new_job(delay=1e15),
            new_job(delay=timedelta.max.total_seconds()),
            new_job(delay=math.inf),
            new_job(delay=math.nan),
            new_job(delay=-1),
        ],
        ids=["year-1+14h", "9999-10h", "1969", "1e15s", "timedelta.max", "inf", "nan", "-1"],
    )
    def test_a_run_time_no_store_can_hold_stores_nothing(
        self, store: RedisAdapter, bad: NewJob
    ) -> None:
        with pytest.raises(InvalidSchedule, match="nothing was stored"):
            store.schedule([new_job(), bad, new_job("other")])
        assert store.counts() == []
        assert store.list_jobs() == []
        with pytest.raises(InvalidSchedule):
            store.schedule_tick("Tick", store.now(), bad)
        assert store.recurring_ticks() == {}

    def test_a_delay_past_9999_from_the_stores_clock_is_refused_by_the_script(
        self, store: RedisAdapter
    ) -> None:
        """A delay short enough for the client's check but, from the store's now, past the
        latest time: the script refuses the batch before it writes."""
        too_long = (LATEST_RUN_AT - store.now()).total_seconds() + 86_400
        with pytest.raises(InvalidSchedule, match="shorter delay"):
            store.schedule([new_job(), new_job(delay=too_long)])
        assert store.counts() == []
        latest = store.schedule_one(new_job(delay=too_long - 2 * 86_400))
        assert store.get(latest.id) == latest
        with pytest.raises(InvalidSchedule):
            store.schedule_tick("Tick", store.now(), new_job(delay=too_long))
        assert store.recurring_ticks() == {}, "a refused run records no tick"

    def test_ticks_no_store_can_hold_are_refused(self, store: RedisAdapter) -> None:
        for tick in (datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999_999)):
            with pytest.raises(InvalidSchedule):
                store.schedule_tick("Tick", tick, new_job())
        assert store.recurring_ticks() == {} and store.counts() == []

    def test_a_reschedule_far_ahead_is_cut_to_the_latest_time(self, store: RedisAdapter) -> None:
        record = store.schedule_one(new_job())
        job = store.claim("w1", None, limit=1, lease=30)[0]
        assert store.reschedule(record.id, job.lock_token or "", delay=1e12, error="E")
        stored = store.get(record.id)
        assert stored is not None and stored.state is JobState.SCHEDULED
        assert stored.run_at == LATEST_RUN_AT
        with pytest.raises(InvalidSchedule):
            store.reschedule(record.id, "t", delay=math.nan, error="E")

    @pytest.mark.parametrize("lease", [math.inf, math.nan, -1.0])
    def test_a_lease_that_is_not_a_time_is_refused(self, store: RedisAdapter, lease: float) -> None:
        store.schedule_one(new_job())
        with pytest.raises(ValidationError, match="lease"):
            store.claim("w1", None, limit=1, lease=lease)
        assert [c.ready for c in store.counts()] == [1]

    # -- a record the client cannot read comes back alone, with its lock -------------------

    @pytest.mark.parametrize(
        ("change", "problem"),
        [
            ({3: "1714000000000"}, "created_at is text"),
            ({3: 10**16}, "outside the range of datetime"),
            ({1: b"\xff\xfe not text"}, "handler is not UTF-8 text"),
            ({2: 1.5}, "priority is float"),
            ({0: 7}, "name is a whole number"),
            ({14: 5}, "unique_key is a whole number"),
        ],
        ids=["created-text", "created-9999+", "handler-bytes", "priority-float", "name-int", "key"],
    )
    @pytest.mark.parametrize("path", ["claim", "complete_and_claim", "ahead", "wait_and_claim"])
    def test_an_unreadable_record_is_claimed_alone_and_failed(
        self, store: RedisAdapter, change: dict[int, object], problem: str, path: str
    ) -> None:
        bad, *good = store.schedule([new_job("q", 1), *(new_job("q", args=[n]) for n in range(3))])
        _rewrite(store, bad.id, change)
        claimed = _claim(store, path)
        assert sorted(job.id for job in claimed) == sorted([bad.id] + [r.id for r in good])
        unreadable = next(job for job in claimed if job.id == bad.id)
        rest = [job for job in claimed if job.id != bad.id]
        assert [job.id for job in rest] == [record.id for record in good], "in claim order"
        assert unreadable.name == UNREADABLE_NAME and unreadable.state is JobState.RUNNING
        assert unreadable.unreadable is not None and problem in unreadable.unreadable
        assert unreadable.last_error is not None and bad.id in unreadable.last_error
        assert unreadable.lock_token and unreadable.attempts == 1
        assert [job.handler for job in rest] == [record.handler for record in good]
        assert all(job.lock_token and job.state is JobState.RUNNING for job in rest)
        # what the worker does with it: fail it at once, with the reason
        assert store.fail(bad.id, unreadable.lock_token, error=unreadable.last_error)
        shown = store.get(bad.id)
        assert shown is not None and shown.state is JobState.FAILED
        assert shown.last_error is not None and problem in shown.last_error
        assert [(c.failed, c.running) for c in store.counts()] == [(1, 3)]
        assert [r.id for r in store.list_jobs(states=[JobState.FAILED])] == [bad.id]
        assert store.delete(bad.id)

    @pytest.mark.parametrize(
        ("raw", "problem"),
        [
            (b"\xc1 not msgpack", "not msgpack"),
            ({2: "high"}, "priority is text"),
            ({3: "yesterday"}, "created_at is text"),
            ({6: "x"}, "attempts is text"),
        ],
        ids=["bytes", "priority-text", "created-word", "attempts-text"],
    )
    def test_a_record_no_script_can_read_is_parked_failed(
        self, store: RedisAdapter, raw: bytes | dict[int, object], problem: str
    ) -> None:
        """A record the scripts cannot compute with is never claimed: the claim puts it in
        the failed set, and every view shows it failed."""
        broken, good = store.schedule([new_job("q", 1), new_job("q")])
        if isinstance(raw, bytes):
            _raw(store, broken.id, raw)
        else:
            _rewrite(store, broken.id, raw)
        assert [job.id for job in store.claim("w1", None, limit=5, lease=30)] == [good.id]
        shown = store.get(broken.id)
        assert shown is not None and shown.state is JobState.FAILED
        assert shown.unreadable is not None and problem in shown.unreadable
        assert [(c.failed, c.running, c.ready) for c in store.counts()] == [(1, 1, 0)]
        assert [r.id for r in store.list_jobs(states=[JobState.FAILED])] == [broken.id]
        assert not store.retry(broken.id)
        assert store.delete(broken.id) and store.get(broken.id) is None
        assert [(c.failed, c.total) for c in store.counts()] == [(0, 1)]

    def test_damaged_ticks_and_fields_do_not_break_listing(self, store: RedisAdapter) -> None:
        store.schedule_tick("Good", store.now(), new_job(), store=False)
        keys = QueueKeys.of(store.prefix, "default")
        store.client.hset(keys.ticks, mapping={"Bad": "yesterday", "Huge": str(10**20)})
        store.client.hset(keys.jobs, "not-a-number", msgpack.packb([1]))
        assert set(store.recurring_ticks()) == {"Good"}
        assert store.list_jobs() == []

    # -- wake-ups stay in their database -----------------------------------------------------

    def test_wake_ups_do_not_cross_databases(self, store_in: StoreIn) -> None:
        zero, one = store_in(0), store_in(1)
        assert zero.wake_channel != one.wake_channel
        woke: list[float] = []

        def wait() -> None:
            one.wait_for_work(["q"], 1.5)
            woke.append(time.monotonic())

        thread = threading.Thread(target=wait)
        started = time.monotonic()
        thread.start()
        time.sleep(0.2)
        zero.schedule_one(new_job("q"))  # the same prefix and queue, another database
        thread.join(5)
        assert woke and woke[0] - started >= 1.4, "database 0's enqueue woke database 1"
        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.2)
        enqueued = time.monotonic()
        one.schedule_one(new_job("q"))
        thread.join(5)
        assert len(woke) == 2 and woke[1] - enqueued < 0.5, "its own enqueue did not wake it"


def _claim(store: RedisAdapter, path: str) -> list[JobRecord]:
    """Up to 10 jobs of queue ``q`` by one of the store's claim paths."""
    if path == "claim":
        return store.claim("w1", ["q"], limit=10, lease=30)
    if path == "complete_and_claim":
        return store.complete_and_claim([], worker_id="w1", queue="q", limit=10, lease=30)[1]
    if path == "ahead":
        receive = store.send_complete_and_claim([], worker_id="w1", queue="q", limit=10, lease=30)
        return receive()[1].records()
    return store.wait_and_claim("w1", "q", limit=10, lease=30, timeout=1)


def _raw(store: RedisAdapter, job: str, raw: bytes) -> None:
    parsed = parse_job_id(job)
    assert parsed is not None
    store.client.hset(QueueKeys.of(store.prefix, parsed[0]).jobs, str(parsed[1]), raw)


def _rewrite(store: RedisAdapter, job: str, change: dict[int, object]) -> None:
    """Change values of a job's stored record, as a hand edit or another program would."""
    fields: list[Any] = packed_fields(store, job)
    fields += [None] * (15 - len(fields))
    for index, value in change.items():
        fields[index] = value
    _raw(store, job, msgpack.packb(fields, use_bin_type=False))  # bytes as str, as Lua writes


class TestHardeningOnFakeredis(HardeningChecks):
    @pytest.fixture
    def store_in(self) -> Iterator[StoreIn]:
        server = fakeredis.FakeServer()
        adapters: list[RedisAdapter] = []

        def store_in(database: int) -> RedisAdapter:
            adapters.append(RedisAdapter(fake_redis(server, db=database), prefix="qbhard"))
            return adapters[-1]

        yield store_in
        for adapter in adapters:
            adapter.close()


class TestHardeningOnRedis(HardeningChecks):
    @pytest.fixture
    def store_in(self, redis_url: str) -> Iterator[StoreIn]:
        prefix = f"qbtest-{uuid.uuid4().hex[:12]}"
        adapters: list[RedisAdapter] = []

        def store_in(database: int) -> RedisAdapter:
            url = url_with(in_database(redis_url, database), prefix=prefix)
            adapters.append(RedisAdapter.from_url(url))
            return adapters[-1]

        yield store_in
        for adapter in adapters:
            adapter.purge()
            leftovers = list(adapter.client.scan_iter(match=f"{prefix}:*"))
            adapter.close()
            assert not leftovers, leftovers[:5]


def test_a_database_the_server_lacks_is_a_configuration_error(redis_url: str) -> None:
    """``redis://host/99999`` passes every check a URL can have, and fails on the server: a
    ``ConfigurationError`` that says so, not a driver traceback, and no password."""
    url = in_database(redis_url, 99_999).replace("://", "://:s3cret-pw@", 1)
    adapter = RedisAdapter.from_url(url + "?password=s3cret-pw")
    try:
        with pytest.raises(ConfigurationError, match="has no such database") as caught:
            adapter.counts()
        assert "s3cret-pw" not in str(caught.value)
        with pytest.raises(ConfigurationError):
            adapter.schedule_one(new_job())
    finally:
        adapter.close()


def test_credentials_the_server_refuses_are_a_configuration_error(redis_url: str) -> None:
    url = redis_url.replace("://", "://nobody:s3cret-pw@", 1)
    adapter = RedisAdapter.from_url(url)
    try:
        with pytest.raises(ConfigurationError, match="refused the connection") as caught:
            adapter.now()
        assert "s3cret-pw" not in str(caught.value)
    finally:
        adapter.close()
