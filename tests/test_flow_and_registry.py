"""Flow control, the worker registry and throughput tallies, end to end in one process on
the in-memory store (the multi-process tests run them on the real stores)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from helpers import CoreOnly

import queuebox
from queuebox import Job, JobState
from queuebox.backends.base import Adapter, NewJob
from queuebox.backends.memory import MemoryAdapter
from queuebox.errors import ConfigurationError
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import StopFlag
from queuebox.runner.worker import Worker

spans: list[tuple[str, float, float]] = []
lock = threading.Lock()


@pytest.fixture(autouse=True)
def _clear() -> None:
    spans.clear()


def _overlap(key: str | None = None) -> int:
    edges = sorted(
        [(start, 1) for k, start, _ in spans if key in (None, k)]
        + [(end, -1) for k, _, end in spans if key in (None, k)]
    )
    peak = current = 0
    for _, change in edges:
        current += change
        peak = max(peak, current)
    return peak


class Export(Job):
    max_concurrency = 2

    def concurrency_key(self, customer: str, seconds: float) -> str:
        return f"export:{customer}"

    def perform(self, customer: str, seconds: float) -> None:
        started = time.monotonic()
        time.sleep(seconds)
        with lock:
            spans.append((customer, started, time.monotonic()))


class CallApi(Job):
    rate_limit = "5/s"

    def perform(self, n: int) -> None:
        with lock:
            spans.append(("api", time.monotonic(), time.monotonic()))


def _run_for(store: Adapter, seconds: float, **settings: Any) -> Worker:
    stop = StopFlag()
    runner = Worker(store, WorkerSettings(sleep_delay=0.05, **settings), stop=stop)
    thread = threading.Thread(target=runner.run)
    thread.start()
    time.sleep(seconds)
    stop.request()
    thread.join(10)
    assert not thread.is_alive()
    return runner


def test_max_concurrency_holds_per_key_with_free_slots_to_spare(
    memory_store: MemoryAdapter,
) -> None:
    Export.perform_later_many([["acme", 0.2] for _ in range(6)] + [["globex", 0.2]] * 2)
    runner = Worker(memory_store, WorkerSettings(concurrency=8, sleep_delay=0.05))
    thread = threading.Thread(target=runner.run)
    thread.start()
    deadline = time.monotonic() + 10
    while len(spans) < 8 and time.monotonic() < deadline:
        time.sleep(0.02)
    runner.stop.request()
    thread.join(10)
    assert len(spans) == 8
    assert _overlap("acme") == 2, "more than max_concurrency ran at once for one key"
    assert _overlap("globex") == 2, "another key was held up"
    assert _overlap() <= 4


def test_a_rate_limit_holds_in_every_window(memory_store: MemoryAdapter) -> None:
    CallApi.perform_later_many([[n] for n in range(12)])
    _run_for(memory_store, 2.4, concurrency=4)
    starts = sorted(start for _, start, _ in spans)
    assert 10 <= len(starts) <= 15
    for index, start in enumerate(starts):
        in_window = [s for s in starts[index:] if s < start + 0.98]
        assert len(in_window) <= 5, f"{len(in_window)} starts within a second"
    waiting = memory_store.list_jobs(states=[JobState.READY])
    assert all(job.attempts == 0 for job in waiting), "a held-back job spent an attempt"


def test_a_paused_queue_is_left_alone_until_resumed(memory_store: MemoryAdapter) -> None:
    class Quick(Job):
        queue = "held"

        def perform(self) -> None:
            with lock:
                spans.append(("quick", time.monotonic(), time.monotonic()))

    assert queuebox.pause("held") is True
    Quick.perform_later()
    stop = StopFlag()
    runner = Worker(memory_store, WorkerSettings(sleep_delay=5), stop=stop)
    thread = threading.Thread(target=runner.run)
    thread.start()
    time.sleep(0.5)
    assert spans == [], "a worker claimed from a paused queue"
    resumed = time.monotonic()
    assert queuebox.resume("held") is True
    deadline = time.monotonic() + 5
    while not spans and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.request()
    thread.join(10)
    assert spans and spans[0][1] - resumed < 1.0, "resuming did not wake the idle worker"


def test_limits_need_a_store_that_enforces_them() -> None:
    queuebox.configure(adapter=CoreOnly(MemoryAdapter()))
    with pytest.raises(ConfigurationError, match="cannot enforce limits"):
        Export.perform_later("acme", 1)
    with pytest.raises(ConfigurationError, match="cannot pause"):
        queuebox.pause("default")
    with pytest.raises(ConfigurationError, match="cannot cancel"):
        queuebox.cancel("1")


def test_a_minimal_store_still_runs_everything_else() -> None:
    store = CoreOnly(MemoryAdapter())
    queuebox.configure(adapter=store)
    SleepyCount.perform_later_many([[n] for n in range(6)])
    summary = Worker(store, WorkerSettings(concurrency=3)).work_off()
    assert summary.succeeded == 6 and store.counts() == []


class SleepyCount(Job):
    def perform(self, n: int) -> None:
        time.sleep(0.01)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_max_concurrency_is_checked(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        type("Bad", (Job,), {"max_concurrency": bad, "perform": lambda self: None})


@pytest.mark.parametrize("bad", ["5", "5/d", "0/s", "x/m", "/m", 5])
def test_rate_limit_is_checked(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="rate_limit"):
        type("Bad", (Job,), {"rate_limit": bad, "perform": lambda self: None})


def test_the_concurrency_key_is_stored_with_the_job(memory_store: MemoryAdapter) -> None:
    record = Export.perform_later("acme", 0)
    assert record.limit_key == "export:acme"
    assert CallApi.perform_later(1).limit_key == "CallApi", "the default key is the name"


# -- the worker registry and throughput ------------------------------------------------------


def test_a_running_worker_is_in_the_registry_with_its_jobs(memory_store: MemoryAdapter) -> None:
    class Slow(Job):
        def perform(self) -> None:
            time.sleep(0.8)

    Slow.perform_later()
    stop = StopFlag()
    runner = Worker(memory_store, WorkerSettings(concurrency=2, sleep_delay=0.05), stop=stop)
    thread = threading.Thread(target=runner.run)
    thread.start()
    time.sleep(0.3)
    seen = memory_store.workers()
    assert [w.id for w in seen] == [runner.worker_id]
    assert seen[0].concurrency == 2 and not seen[0].lost
    time.sleep(0.6)
    stop.request()
    thread.join(10)
    assert memory_store.workers() == [], "a clean exit leaves the registry"


def test_outcomes_are_tallied_per_minute(memory_store: MemoryAdapter) -> None:
    class Outcomes(Job):
        max_attempts = 2

        def perform(self, how: str) -> None:
            if how == "raise":
                raise ValueError("no")

    Outcomes.perform_later_many([["ok"], ["ok"], ["raise"]])
    before = memory_store.now() - timedelta(minutes=1)
    worker = Worker(memory_store, WorkerSettings())
    worker.work_off()
    memory_store.advance(2)
    worker = Worker(memory_store, WorkerSettings())
    worker.work_off()
    rows = memory_store.stats(since=before)
    assert sum(r.succeeded for r in rows) == 2
    assert sum(r.retried for r in rows) == 1 and sum(r.failed for r in rows) == 1
    assert {r.queue for r in rows} == {"default"} and {r.name for r in rows} == {"Outcomes"}
    assert sum(sum(r.runtime_counts) for r in rows) == 4


def test_stats_can_be_switched_off(memory_store: MemoryAdapter) -> None:
    memory_store.schedule_one(
        NewJob(name="Nothing", handler='{"name":"Nothing"}', queue="q", priority=5)
    )
    Worker(memory_store, WorkerSettings(record_stats=False)).work_off()
    assert memory_store.stats(since=memory_store.now() - timedelta(hours=1)) == []
