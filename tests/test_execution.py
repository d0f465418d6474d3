"""Real work in one worker: many jobs in flight, async jobs, enforced max_runtime and
cancellation, on the in-memory store (the same worker core runs every store; the process
and store tests run them for real)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

import queuebox
from queuebox import Job, JobState
from queuebox.backends.base import JobRecord
from queuebox.backends.memory import MemoryAdapter
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import StopFlag
from queuebox.runner.worker import Worker

events: list[Any] = []
lock = threading.Lock()


@pytest.fixture(autouse=True)
def _clear_events() -> None:
    events.clear()


def note(*what: Any) -> None:
    with lock:
        events.append(what)


def spin(seconds: float) -> None:
    """Busy Python code: an interruption lands at once (unlike a blocking C call)."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        pass


class SleepSync(Job):
    def perform(self, seconds: float, tag: Any = None) -> None:
        note("start", tag, threading.current_thread().name, time.monotonic())
        time.sleep(seconds)
        note("end", tag, time.monotonic())


class SleepAsync(Job):
    async def perform(self, seconds: float, tag: Any = None) -> None:
        note("start", tag, threading.current_thread().name, time.monotonic())
        await asyncio.sleep(seconds)
        note("end", tag, time.monotonic())


class SpinsForever(Job):
    max_runtime = 0.4

    def perform(self) -> None:
        try:
            spin(30)
        finally:
            note("stopped", self.cancelled)


class AwaitsForever(Job):
    max_runtime = 0.4

    async def perform(self) -> None:
        try:
            await asyncio.sleep(30)
        finally:
            note("stopped", self.cancelled)


def worker(store: MemoryAdapter, **settings: Any) -> Worker:
    settings.setdefault("sleep_delay", 0.05)
    return Worker(store, WorkerSettings(**settings), worker_id="test-worker")


def timed(action: Callable[[], Any]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


# -- many jobs in flight ---------------------------------------------------------------------


@pytest.mark.parametrize("job", [SleepSync, SleepAsync])
def test_concurrency_runs_that_many_jobs_at_once(
    memory_store: MemoryAdapter, job: type[Job]
) -> None:
    job.perform_later_many([[0.3, n] for n in range(16)])
    runner = worker(memory_store, concurrency=16)
    elapsed = timed(runner.work_off)
    assert runner.summary.succeeded == 16 and memory_store.counts() == []
    assert elapsed < 1.5, f"16 jobs of 0.3 s took {elapsed:.2f}s with 16 slots"
    starts = [e[3] for e in events if e[0] == "start"]
    assert max(starts) - min(starts) < 0.25, "the jobs did not start together"


def test_sync_jobs_run_on_threads_and_async_ones_on_the_loop(memory_store: MemoryAdapter) -> None:
    SleepSync.perform_later_many([[0.05, f"s{n}"] for n in range(4)])
    SleepAsync.perform_later_many([[0.05, f"a{n}"] for n in range(4)])
    runner = worker(memory_store, concurrency=8)
    runner.work_off()
    threads = {e[1]: e[2] for e in events if e[0] == "start"}
    assert all(threads[f"s{n}"].startswith("queuebox-slot") for n in range(4))
    loop_threads = {threads[f"a{n}"] for n in range(4)}
    assert loop_threads == {threading.current_thread().name}, "async jobs left the loop"
    assert runner.summary.succeeded == 8


def test_never_more_than_concurrency_in_flight(memory_store: MemoryAdapter) -> None:
    SleepAsync.perform_later_many([[0.02, n] for n in range(60)])
    runner = worker(memory_store, concurrency=5)
    runner.work_off()
    timeline = sorted(
        [(e[3], +1) for e in events if e[0] == "start"]
        + [(e[2], -1) for e in events if e[0] == "end"]
    )
    in_flight = peak = 0
    for _, change in timeline:
        in_flight += change
        peak = max(peak, in_flight)
    assert peak == 5 and runner.summary.succeeded == 60


def test_the_log_says_which_slot_runs_which_job(
    memory_store: MemoryAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="queuebox")
    SleepSync.perform_later_many([[0.1, n] for n in range(3)])
    worker(memory_store, concurrency=3).work_off()
    slots = {line.split("slot ")[1] for line in caplog.messages if line.startswith("started")}
    assert slots == {"1", "2", "3"}


def test_each_run_sees_its_own_record_and_hooks(memory_store: MemoryAdapter) -> None:
    class HookedRun(Job):
        def before_perform(self) -> None:
            assert self.record is not None
            note("before", self.record.id, self.args)

        def perform(self, value: int) -> None:
            assert self.record is not None
            time.sleep(0.05)
            note("perform", self.record.id, value)

    queuebox.add_hook("after_success", lambda job: note("after", job.record.id, job.args))
    records = HookedRun.perform_later_many([[n] for n in range(6)])
    worker(memory_store, concurrency=6).work_off()
    for record in records:
        value = int(record.handler.split("[")[1].split("]")[0])
        assert ("before", record.id, [value]) in events
        assert ("perform", record.id, value) in events
        assert ("after", record.id, [value]) in events


class CountingStore(MemoryAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.renewals: list[int] = []

    def extend_many(self, locks: Sequence[tuple[str, str]], *, lease: float) -> list[bool]:
        self.renewals.append(len(locks))
        return super().extend_many(locks, lease=lease)


def test_the_heartbeat_renews_every_lock_in_one_call() -> None:
    store = CountingStore()
    queuebox.configure(adapter=store)
    SleepAsync.perform_later_many([[1.0, n] for n in range(10)])
    thief: list[list[JobRecord]] = []

    def steal() -> None:
        time.sleep(0.8)
        thief.append(store.claim("thief", None, limit=10, lease=60))

    threading.Thread(target=steal).start()
    worker(store, concurrency=10, lease=0.3).work_off()
    assert thief == [[]], "a job whose lock was renewed was taken"
    # one call renews all ten every lease/3 (0.1 s): about ten calls in the second they ran
    assert store.renewals.count(10) >= 5, store.renewals
    assert len(store.renewals) <= 15, f"{len(store.renewals)} renewal calls in about 1 s"


def test_a_warm_stop_waits_for_every_run_and_gives_back_the_rest(
    memory_store: MemoryAdapter,
) -> None:
    stop = StopFlag()
    SleepSync.perform_later_many([[0.5, n] for n in range(4)])
    runner = Worker(memory_store, WorkerSettings(concurrency=4, sleep_delay=0.05), stop=stop)
    thread = threading.Thread(target=runner.run)
    thread.start()
    while len([e for e in events if e[0] == "start"]) < 4:
        time.sleep(0.01)
    waiting = SleepSync.perform_later(0.5, "late")
    stop.request()
    thread.join(10)
    assert not thread.is_alive()
    assert runner.summary.succeeded == 4, "a run in flight was cut short by a warm stop"
    job = memory_store.get(waiting.id)
    assert job is not None and job.state is JobState.READY


def test_a_cold_stop_gives_every_lock_back(memory_store: MemoryAdapter) -> None:
    stop = StopFlag()

    class Spins(Job):
        def perform(self) -> None:
            note("start")
            spin(30)

    records = Spins.perform_later_many([[] for _ in range(3)])
    runner = Worker(memory_store, WorkerSettings(concurrency=3, sleep_delay=0.05), stop=stop)
    thread = threading.Thread(target=runner.run)
    thread.start()
    while len(events) < 3:
        time.sleep(0.01)
    stop.stop_now()
    thread.join(10)
    assert not thread.is_alive()
    for record in records:
        job = memory_store.get(record.id)
        assert job is not None and job.state is JobState.READY and job.attempts == 0


# -- max_runtime -----------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("job", [SpinsForever, AwaitsForever])
def test_a_run_past_max_runtime_is_stopped_and_retried(
    memory_store: MemoryAdapter, job: type[Job], concurrency: int
) -> None:
    record = job.perform_later()
    runner = worker(memory_store, concurrency=concurrency)
    elapsed = timed(runner.run_once if concurrency == 1 else runner.work_off)
    assert elapsed < 2.0, f"a 0.4 s max_runtime stopped the run after {elapsed:.1f}s"
    assert events == [("stopped", False)]
    stored = memory_store.get(record.id)
    assert stored is not None and stored.state is JobState.SCHEDULED and stored.attempts == 1
    assert stored.last_error == "JobTimeout: ran longer than max_runtime (0.4s)"
    assert runner.summary.retried == 1 and runner.summary.timed_out == 1


def test_the_worker_max_runtime_applies_when_the_class_sets_none(
    memory_store: MemoryAdapter,
) -> None:
    class Spins(Job):
        def perform(self) -> None:
            spin(30)

    record = Spins.perform_later()
    worker(memory_store, max_runtime=0.3).run_once()
    stored = memory_store.get(record.id)
    assert stored is not None and stored.last_error is not None
    assert stored.last_error.startswith("JobTimeout: ran longer than max_runtime (0.3s)")


def test_a_long_run_is_never_taken_over_while_it_runs(memory_store: MemoryAdapter) -> None:
    """The lease is renewed for as long as the run goes, whatever max_runtime says."""
    stolen: list[list[JobRecord]] = []

    class Long(Job):
        max_runtime = 5

        def perform(self) -> None:
            time.sleep(1.0)
            stolen.append(memory_store.claim("thief", None, limit=1, lease=60))

    Long.perform_later()
    summary = worker(memory_store, lease=0.3).work_off()
    assert stolen == [[]] and summary.succeeded == 1


# -- cancellation ----------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("job", [SpinsForever, AwaitsForever])
def test_cancelling_a_running_job_stops_it_within_a_second(
    memory_store: MemoryAdapter, job: type[Job], concurrency: int
) -> None:
    class Patient(job):  # type: ignore[valid-type, misc]
        name = f"Patient{job.__name__}{concurrency}"
        max_runtime = 60

    record = Patient.perform_later()
    runner = worker(memory_store, concurrency=concurrency)
    thread = threading.Thread(target=runner.work_off)
    thread.start()
    while (stored := memory_store.get(record.id)) is None or stored.state is not JobState.RUNNING:
        time.sleep(0.01)
    time.sleep(0.1)
    asked = time.monotonic()
    assert queuebox.cancel(record.id) is True
    thread.join(10)
    took = time.monotonic() - asked
    assert took < 1.0, f"the cancelled run went on for {took:.2f}s"
    assert events == [("stopped", True)], "self.cancelled was not set when it stopped"
    final = memory_store.get(record.id)
    assert final is not None and final.state is JobState.CANCELLED
    assert final.last_error is not None and final.last_error.startswith("JobCancelled")
    assert runner.summary.cancelled == 1 and runner.summary.retried == 0


def test_a_cancelled_job_waiting_in_the_batch_never_starts(memory_store: MemoryAdapter) -> None:
    class First(Job):
        def perform(self, victim: str) -> None:
            assert queuebox.cancel(victim) is True  # claimed with this one, not started
            time.sleep(0.4)  # the heartbeat notices meanwhile

    class Victim(Job):
        def perform(self) -> None:
            note("victim ran")

    victim = Victim.set(priority=60).perform_later()
    First.set(priority=10).perform_later(victim.id)
    runner = worker(memory_store, batch_size=2)
    runner.run_once()
    assert events == []
    final = memory_store.get(victim.id)
    assert final is not None and final.state is JobState.CANCELLED


def test_a_job_can_cancel_itself(memory_store: MemoryAdapter) -> None:
    class GivesUp(Job):
        def perform(self) -> None:
            raise queuebox.JobCancelled("nothing left to do")

    record = GivesUp.perform_later()
    summary = worker(memory_store).work_off()
    final = memory_store.get(record.id)
    assert final is not None and final.state is JobState.CANCELLED
    assert summary.cancelled == 1 and summary.retried == 0


def test_cancel_says_when_a_job_had_finished(memory_store: MemoryAdapter) -> None:
    class Quick(Job):
        def perform(self) -> None: ...

    record = Quick.perform_later()
    worker(memory_store, delete_successful_jobs=False).work_off()
    assert queuebox.cancel(record.id) is False
    assert queuebox.cancel("12345") is False
