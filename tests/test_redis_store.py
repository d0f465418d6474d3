"""What the Redis store promises beyond the contract: script reloads, round trips, wake-ups,
memory per job, thread safety. These run against the real server (``redis_url``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis.connection import AbstractConnection
from test_redis_support import isolated_prefix, url_with

from queuebox.backends.base import JobState
from queuebox.backends.redis import RedisAdapter
from queuebox.backends.redis_keys import QueueKeys
from queuebox.testing import new_job


@pytest.fixture
def store_url(redis_url: str) -> Iterator[str]:
    with isolated_prefix(redis_url) as prefix:
        yield url_with(redis_url, prefix=prefix)


@pytest.fixture
def adapter(store_url: str) -> Iterator[RedisAdapter]:
    adapter = RedisAdapter.from_url(store_url)
    try:
        yield adapter
    finally:
        adapter.close()


class RoundTrips:
    """Counts the requests every connection sends (a pipeline is one)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original: Any = AbstractConnection.send_packed_command

        def counting(conn: AbstractConnection, command: Any, check_health: bool = True) -> None:
            self.count += 1
            original(conn, command, check_health)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)

    def __call__(self) -> int:
        count, self.count = self.count, 0
        return count


def test_script_cache_flushed_mid_run(adapter: RedisAdapter) -> None:
    client = adapter.client
    records = adapter.schedule([new_job("a", args=[i]) for i in range(6)] + [new_job("b", 1)])
    client.script_flush()
    claimed = adapter.claim("w1", ["a", "b"], limit=3, lease=60)  # peek + claim pipelines
    assert [job.queue for job in claimed] == ["b", "a", "a"]
    client.script_flush()
    assert adapter.complete_many([(job.id, job.lock_token or "") for job in claimed]) == [True] * 3
    client.script_flush()
    job = adapter.claim("w1", ["a"], limit=1, lease=60)[0]
    client.script_flush()
    assert adapter.extend(job.id, job.lock_token or "", lease=60)
    client.script_flush()
    assert adapter.reschedule(job.id, job.lock_token or "", delay=0, error="E")
    client.script_flush()
    assert [c.ready for c in adapter.counts()] == [4]
    client.script_flush()
    adapter.wait_for_work(["a"], 0.01)
    client.script_flush()
    tick = adapter.now()
    assert adapter.schedule_tick("T", tick, new_job("a", unique_key="u")) is not None
    assert adapter.recurring_ticks() == {
        "T": tick.replace(microsecond=tick.microsecond // 1000 * 1000)
    }
    client.script_flush()
    assert adapter.schedule_one(new_job("a", unique_key="u")).unique_key == "u"
    assert adapter.clear() == 5
    assert all(adapter.get(record.id) is None for record in records)


def test_round_trips(adapter: RedisAdapter, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter.schedule_one(new_job("email"))  # a queue's first job also registers it
    adapter.migrate()  # loads every script, so that no NOSCRIPT retry shows up below
    trips = RoundTrips(monkeypatch)
    adapter.schedule_one(new_job("email", args=[1]))
    assert trips() == 1, "enqueue one job = one EVALSHA"
    adapter.schedule([new_job("email", args=[i]) for i in range(100)])
    assert trips() == 1, "a batch of one queue's jobs = one EVALSHA"
    claimed = adapter.claim("w1", ["email"], limit=50, lease=60)
    assert len(claimed) == 50 and trips() == 1, "claim on one queue = one EVALSHA"
    assert all(adapter.complete_many([(j.id, j.lock_token or "") for j in claimed[:25]]))
    assert trips() == 1, "complete_many = one pipeline"
    acks = [(j.id, j.lock_token or "") for j in claimed[25:]]
    results, more = adapter.complete_and_claim(
        acks, worker_id="w1", queue="email", limit=10, lease=60
    )
    assert all(results) and len(more) == 10
    assert trips() == 1, "acknowledge a batch and claim the next = one pipeline"
    wait = adapter.wait_and_claim("w1", "email", limit=10, lease=60, timeout=1)
    assert len(wait) == 10 and trips() == 2, "work is ready: due, then claim"
    adapter.schedule([new_job("other")])
    trips()
    claimed = adapter.claim("w1", ["email", "other"], limit=10, lease=60)
    assert len(claimed) == 10 and trips() == 2, "claim across queues = peek + claim pipelines"
    tick = adapter.now().replace(microsecond=0)
    trips()
    assert adapter.schedule_tick("Nightly", tick, new_job("email", unique_key="recurring:N"))
    assert trips() == 1, "record a tick and store its run = one EVALSHA"
    assert adapter.schedule_tick("Nightly", tick, new_job("email")) is None
    assert trips() == 1
    adapter.schedule_tick("Hourly", tick, new_job("other"), store=False)
    trips()
    assert adapter.recurring_ticks() == {"Nightly": tick, "Hourly": tick}
    assert trips() == 2, "recurring ticks = SMEMBERS + one pipeline of HGETALL"


def test_a_name_no_job_has_answers_after_scan_limit_records(
    adapter: RedisAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sparse name filter (no index holds names) stops after ``scan_limit`` records with
    an empty page and a cursor, in a bounded number of round trips; the cursors reach the
    one match at the bottom."""
    rare = adapter.schedule_one(new_job("email", name="Rare"))
    adapter.schedule([new_job("email", args=[n]) for n in range(3000)])
    adapter.scan_limit = 500
    trips = RoundTrips(monkeypatch)
    page = adapter.search_jobs(name="Rare", limit=10)
    assert page.jobs == [] and page.next_cursor is not None
    assert trips() == 2, "the queue list, then 500 records in one search.lua call"
    found: list[str] = []
    calls = 1
    while page.next_cursor is not None and calls < 10:
        page = adapter.search_jobs(name="Rare", limit=10, cursor=page.next_cursor)
        found += [job.id for job in page.jobs]
        calls += 1
    assert found == [rare.id] and page.next_cursor is None
    assert calls == 7, "3,001 records, 500 a call"


def test_idle_worker_wakes_within_milliseconds_of_an_enqueue(store_url: str) -> None:
    waiter, producer = RedisAdapter.from_url(store_url), RedisAdapter.from_url(store_url)
    try:
        for queues in (["wake"], None):
            producer.schedule_one(new_job("warm"))  # so the registry is not empty
            waiter.wait_for_work(queues, 0.01)
            woke: list[float] = []

            def wait(queues: list[str] | None = queues, woke: list[float] = woke) -> None:
                waiter.wait_for_work(queues, 10)
                woke.append(time.monotonic())

            thread = threading.Thread(target=wait)
            thread.start()
            time.sleep(0.2)
            enqueued = time.monotonic()
            producer.schedule_one(new_job("wake"))
            thread.join(5)
            assert woke and woke[0] - enqueued < 0.1, f"woke {woke[0] - enqueued:.3f}s late"
            producer.clear()
    finally:
        waiter.close()
        producer.close()


def test_delayed_job_wakes_the_worker_at_its_run_at(adapter: RedisAdapter) -> None:
    record = adapter.schedule_one(new_job("later", delay=0.5))
    adapter.wait_for_work(["later"], 10)
    late = (adapter.now() - record.run_at).total_seconds()
    assert 0 <= late < 0.1, f"woke {late:.3f}s after run_at"
    assert [job.id for job in adapter.claim("w1", ["later"], limit=1, lease=60)] == [record.id]


def test_wait_returns_at_once_when_work_is_ready(adapter: RedisAdapter) -> None:
    adapter.schedule_one(new_job("ready"))
    started = time.monotonic()
    adapter.wait_for_work(None, 5)
    assert time.monotonic() - started < 0.5


def test_heartbeat_thread_extends_while_the_main_thread_works(adapter: RedisAdapter) -> None:
    adapter.schedule([new_job("hb", args=[i]) for i in range(40)])
    held = adapter.claim("w1", ["hb"], limit=1, lease=0.5)[0]
    stop = threading.Event()
    failures: list[str] = []

    def heartbeat() -> None:
        while not stop.wait(0.05):
            if not adapter.extend(held.id, held.lock_token or "", lease=0.5):
                failures.append("lost the lock")

    thread = threading.Thread(target=heartbeat)
    thread.start()
    try:
        for _ in range(39):
            job = adapter.claim("w1", ["hb"], limit=1, lease=60)[0]
            assert adapter.complete(job.id, job.lock_token or "")
        time.sleep(0.7)
    finally:
        stop.set()
        thread.join()
    assert not failures
    assert adapter.complete(held.id, held.lock_token or "")
    assert adapter.counts() == []


def test_memory_per_waiting_job(adapter: RedisAdapter, capsys: pytest.CaptureFixture[str]) -> None:
    """MEMORY USAGE summed over the queue's keys, per job, for 10,000 ready jobs with one small
    argument each (docs/redis.md reports the same measure)."""
    client = adapter.client
    adapter.schedule_one(new_job("mem", args=[0]))
    adapter.clear(["mem"])
    jobs = 10_000
    for _ in range(jobs // 1000):
        adapter.schedule([new_job("mem", args=[42]) for _ in range(1000)])
    keys = QueueKeys.of(adapter.prefix, "mem")
    base = keys.meta[: -len("meta")]
    names = [key for key in keys if key != keys.meta]
    buckets = [base + "r:" + m.decode() for m in client.zrange(keys.ridx, 0, -1)]
    assert buckets and client.exists(*buckets) == len(buckets)
    names += buckets
    per_job = sum(client.memory_usage(name, samples=0) or 0 for name in names) / jobs
    with capsys.disabled():
        print(f"\nRedis memory per waiting job: {per_job:.0f} bytes (MEMORY USAGE)")
    assert per_job <= 200
    assert adapter.counts()[0].ready == jobs


def test_memory_per_waiting_unique_job(
    adapter: RedisAdapter, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same measure for jobs with a unique key each, the ``unique`` hash included."""
    client = adapter.client
    jobs = 10_000
    for batch in range(jobs // 1000):
        unique = (f"report:{batch * 1000 + i}" for i in range(1000))
        adapter.schedule([new_job("memu", args=[42], unique_key=key) for key in unique])
    keys = QueueKeys.of(adapter.prefix, "memu")
    base = keys.meta[: -len("meta")]
    names = [key for key in keys if key != keys.meta]
    names += [base + "r:" + m.decode() for m in client.zrange(keys.ridx, 0, -1)]
    assert client.hlen(keys.unique) == jobs
    per_job = sum(client.memory_usage(name, samples=0) or 0 for name in names) / jobs
    with capsys.disabled():
        print(f"\nRedis memory per waiting job with a unique key: {per_job:.0f} bytes")
    assert per_job <= 260


def test_records_use_the_store_clock(adapter: RedisAdapter) -> None:
    record = adapter.schedule_one(new_job("clock", delay=2))
    assert record.state is JobState.SCHEDULED
    assert record.run_at.tzinfo is not None and record.created_at.tzinfo is not None
    assert abs((record.created_at - adapter.now()).total_seconds()) < 1


def test_a_round_trip_split_in_two_sends_now_and_reads_later(
    adapter: RedisAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter.schedule([new_job("q", args=[i]) for i in range(5)])
    adapter.migrate()
    first = adapter.claim("w1", ["q"], limit=2, lease=60)
    trips = RoundTrips(monkeypatch)
    receive = adapter.send_complete_and_claim(
        [(job.id, job.lock_token or "") for job in first],
        worker_id="w1",
        queue="q",
        limit=2,
        lease=60,
    )
    assert trips() == 1, "the acknowledgements and the claim go out as one pipeline"
    # Redis ran it already: the first two are gone, the next two are locked
    assert [(c.ready, c.running) for c in adapter.counts()] == [(1, 2)]
    trips()
    results, batch = receive()
    assert trips() == 0, "reading the reply sends nothing"
    records = batch.records()
    assert results == [True, True] and len(batch) == 2
    assert [job.state for job in records] == [JobState.RUNNING] * 2
    stored = [adapter.get(job.id) for job in records]
    assert all(job is not None and job.locked_by == "w1" for job in stored)
    with pytest.raises(RuntimeError, match="read already"):
        receive()


def test_a_split_round_trip_survives_a_flushed_script_cache(adapter: RedisAdapter) -> None:
    adapter.schedule([new_job("q", args=[i]) for i in range(3)])
    first = adapter.claim("w1", ["q"], limit=1, lease=60)
    adapter.client.script_flush()
    receive = adapter.send_complete_and_claim(
        [(first[0].id, first[0].lock_token or "")], worker_id="w1", queue="q", limit=5, lease=60
    )
    results, batch = receive()  # both calls were refused with NOSCRIPT, then run again
    assert results == [True] and len(batch.records()) == 2
    assert adapter.get(first[0].id) is None


def test_a_worker_claiming_ahead_runs_each_job_once(store_url: str) -> None:
    import queuebox
    from queuebox import Job
    from queuebox.runner.settings import WorkerSettings
    from queuebox.runner.worker import Worker

    ran: list[int] = []

    class Counted(Job):
        queue = "ahead"

        def perform(self, n: int) -> None:
            ran.append(n)

    adapter = RedisAdapter.from_url(store_url)
    try:
        queuebox.configure(adapter=adapter)
        Counted.perform_later_many([(n,) for n in range(1_000)])
        sends = 0
        original = adapter.send_complete_and_claim

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal sends
            sends += 1
            return original(*args, **kwargs)

        adapter.send_complete_and_claim = counting  # type: ignore[method-assign]
        summary = Worker(adapter, WorkerSettings(queues=("ahead",), batch_size=64)).work_off()
        assert sorted(ran) == list(range(1_000)) and summary.succeeded == 1_000
        assert sends >= 1_000 // 64, "the worker claimed ahead"
        assert adapter.counts() == []
    finally:
        adapter.close()
