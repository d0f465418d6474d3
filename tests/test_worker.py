"""The worker's policy, on the in-memory store: outcomes, backoff, limits, stops, leases."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from queuebox import Job, JobState
from queuebox.backends.base import WORKER_LOST, JobRecord, NewJob
from queuebox.backends.memory import MemoryAdapter
from queuebox.backends.sqlite import SQLiteAdapter
from queuebox.errors import StorageUnavailable
from queuebox.runner.outcomes import BACKOFF_ATTEMPTS_CAP
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import ColdStop, StopFlag
from queuebox.runner.worker import MAX_ERROR_CHARS, Worker, backoff_delay, format_error

calls: list[Any] = []


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    calls.clear()


class Succeeds(Job):
    def perform(self, value: Any) -> None:
        calls.append(value)


class Raises(Job):
    def perform(self, message: str) -> None:
        calls.append(message)
        raise ValueError(message)


class RaisesTwiceOnly(Job):
    max_attempts = 3

    def perform(self) -> None:
        raise RuntimeError("always")


def worker(adapter: MemoryAdapter, **settings: Any) -> Worker:
    return Worker(adapter, WorkerSettings(**settings), worker_id="test-worker")


def stored(adapter: MemoryAdapter, job_id: str) -> JobRecord:
    record = adapter.get(job_id)
    assert record is not None
    return record


def test_success_runs_the_job_and_deletes_it(memory_store: MemoryAdapter) -> None:
    record = Succeeds.perform_later({"user": 42})
    summary = worker(memory_store).work_off()
    assert calls == [{"user": 42}]
    assert summary.succeeded == 1 and not summary.raised
    assert memory_store.get(record.id) is None


def test_success_can_keep_the_job(memory_store: MemoryAdapter) -> None:
    record = Succeeds.perform_later(1)
    worker(memory_store, delete_successful_jobs=False).work_off()
    assert stored(memory_store, record.id).state is JobState.COMPLETED


def test_the_job_sees_its_record(memory_store: MemoryAdapter) -> None:
    class SeesRecord(Job):
        def perform(self) -> None:
            assert self.record is not None
            calls.append((self.record.id, self.record.attempts))

    record = SeesRecord.perform_later()
    worker(memory_store).work_off()
    assert calls == [(record.id, 1)]


def test_error_reschedules_with_attempts_to_the_fourth(memory_store: MemoryAdapter) -> None:
    record = Raises.perform_later("boom")
    before = memory_store.now()
    summary = worker(memory_store).work_off()
    assert summary.retried == 1 and summary.raised
    job = stored(memory_store, record.id)
    assert job.state is JobState.SCHEDULED and job.attempts == 1
    assert job.last_error is not None
    assert job.last_error.startswith("ValueError: boom\n")
    assert "Traceback" in job.last_error and "in perform" in job.last_error
    assert abs((job.run_at - before).total_seconds() - 1) < 1


def test_backoff_grows_as_attempts_to_the_fourth() -> None:
    assert [backoff_delay(n) for n in (1, 2, 3, 10)] == [1.0, 16.0, 81.0, 10000.0]
    assert backoff_delay(10**6) == backoff_delay(BACKOFF_ATTEMPTS_CAP) == 500.0**4


class RaisesForAThousandAttempts(Job):
    max_attempts = 1000  # a job class's max_attempts is not bounded as the command line's is

    def perform(self) -> None:
        raise RuntimeError("again")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_retry_after_hundreds_of_attempts_stays_a_time_the_store_holds(
    kind: str, tmp_path: Path
) -> None:
    # 800 ** 4 s from now is past 9999-12-31: the in-memory store raised OverflowError out of
    # the worker, SQLite stored a run time it then read back as an unreadable record.
    adapter = MemoryAdapter() if kind == "memory" else SQLiteAdapter(tmp_path / "jobs.db")
    adapter.migrate()
    record = adapter.schedule_one(
        NewJob(
            name="RaisesForAThousandAttempts",
            handler='{"name":"RaisesForAThousandAttempts","args":[],"kwargs":{}}',
            queue="default",
            priority=50,
        )
    )
    for _ in range(799):
        [held] = adapter.claim("w", ["default"], limit=1, lease=60)
        assert adapter.reschedule(held.id, held.lock_token or "", delay=0, error="earlier")
    summary = worker(adapter).work_off()  # type: ignore[arg-type]
    assert summary.retried == 1
    job = adapter.get(record.id)
    assert job is not None and job.unreadable is None
    assert job.state is JobState.SCHEDULED and job.attempts == 800
    assert job.last_error is not None and job.last_error.startswith("RuntimeError: again")
    years = (job.run_at - adapter.now()).total_seconds() / (365.25 * 86400)
    assert 1900 < years < 2000  # 500 ** 4 seconds
    adapter.close()


def test_the_job_is_failed_after_max_attempts(memory_store: MemoryAdapter) -> None:
    record = Raises.perform_later("again")
    runner = worker(memory_store, max_attempts=3)
    for attempt in range(1, 4):
        _make_due(memory_store, record.id)
        runner.work_off()
        job = memory_store.get(record.id)
        assert job is not None and job.attempts == attempt
    final = stored(memory_store, record.id)
    assert final.state is JobState.FAILED
    assert final.failed_at is not None
    assert final.last_error is not None and final.last_error.startswith("ValueError: again")
    assert runner.summary.failed == 1 and runner.summary.failed_ids == [record.id]


def _make_due(adapter: MemoryAdapter, job_id: str) -> None:
    job = stored(adapter, job_id)
    adapter.advance(max(0.0, (job.run_at - adapter.now()).total_seconds()))


def test_job_class_max_attempts_overrides_the_worker(memory_store: MemoryAdapter) -> None:
    record = RaisesTwiceOnly.perform_later()
    runner = worker(memory_store, max_attempts=24)
    for _ in range(3):
        _make_due(memory_store, record.id)
        runner.work_off()
    assert stored(memory_store, record.id).state is JobState.FAILED


def test_failed_jobs_can_be_deleted(memory_store: MemoryAdapter) -> None:
    record = Raises.perform_later("x")
    worker(memory_store, max_attempts=1, delete_failed_jobs=True).work_off()
    assert memory_store.get(record.id) is None


def _store_raw(adapter: MemoryAdapter, handler: str, name: str = "Raw") -> JobRecord:
    return adapter.schedule_one(NewJob(name=name, handler=handler, queue="default", priority=50))


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        ("not json", "PayloadError: the stored payload is not valid JSON"),
        ("[1, 2]", "PayloadError: the stored payload is a JSON list"),
        ('{"args": []}', "PayloadError: the stored payload has no job name"),
        ('{"name": "Succeeds", "args": {}}', "PayloadError: the stored payload's 'args' is a dict"),
        ('{"name": "Succeeds", "args": [], "kwargs": []}', "'kwargs' is a list"),
        ('{"name": "NoSuchJob", "args": []}', "UnknownJob: no job named 'NoSuchJob'"),
        ('{"name": "os.remove", "args": ["/etc/passwd"]}', "UnknownJob: no job named 'os.remove'"),
        ('{"name": "builtins.eval", "args": ["1"]}', "UnknownJob"),
        ('{"name": "subprocess.call", "args": [["true"]]}', "UnknownJob"),
        ('{"name": "Succeeds", "args": ["x"]} {"name": "Succeeds"}', "Extra data"),
        ('{"name": "Succeeds", "args": ["x"]', "not valid JSON"),
        # Nested past json's recursion limit: RecursionError, not ValueError, stopped the worker.
        ('{"name": "Succeeds", "args": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
        (" " + "[" * 5000 + "]" * 5000, "nested too deeply"),  # the json.loads path
        ('{"name": "Succeeds", "args": [NaN]}', "NaN is not a JSON value"),
        (' {"name": "Succeeds", "args": [-Infinity]}', "-Infinity is not a JSON value"),
    ],
)
def test_unrunnable_payloads_fail_at_once(
    memory_store: MemoryAdapter, handler: str, expected: str
) -> None:
    bad = _store_raw(memory_store, handler)
    good = Succeeds.perform_later("after")
    modules_before = set(sys.modules)
    summary = worker(memory_store).work_off()
    job = stored(memory_store, bad.id)
    assert job.state is JobState.FAILED and job.attempts == 1
    assert job.last_error is not None and expected in job.last_error
    assert calls == ["after"] and memory_store.get(good.id) is None
    assert summary.failed == 1 and summary.succeeded == 1
    assert set(sys.modules) - modules_before == set(), "a payload made the worker import"


def test_a_payload_with_whitespace_around_it_still_runs(memory_store: MemoryAdapter) -> None:
    # The worker reads queuebox's own compact JSON on a fast path; JSON that another writer
    # padded (a migration script, a hand-made row) still reads, as JSON allows.
    record = _store_raw(memory_store, '\n  {"name": "Succeeds", "args": ["padded"]}  \n')
    summary = worker(memory_store).work_off()
    assert calls == ["padded"] and summary.succeeded == 1
    assert memory_store.get(record.id) is None


def test_a_reclaim_past_max_attempts_fails_the_job(memory_store: MemoryAdapter) -> None:
    record = Succeeds.perform_later("never")
    for _ in range(2):  # two workers die holding it: each claim spends an attempt
        memory_store.claim("dead-worker", None, limit=1, lease=0.01)
        time.sleep(0.03)
    summary = worker(memory_store, max_attempts=2).work_off()
    job = stored(memory_store, record.id)
    assert job.state is JobState.FAILED and job.attempts == 3
    assert job.last_error is not None and job.last_error.startswith(WORKER_LOST)
    assert "out of attempts (2)" in job.last_error
    assert calls == [] and summary.failed == 1


def _ping(n: int) -> None:
    if n == 0:
        raise KeyError("x" * 10_000)
    _pong(n - 1)


def _pong(n: int) -> None:
    _ping(n - 1)


def test_format_error_is_bounded_and_keeps_the_raising_frame() -> None:
    try:
        _ping(400)  # distinct frames in turn, which the traceback cannot fold
    except KeyError as exc:
        text = format_error(exc)
    assert len(text) <= MAX_ERROR_CHARS
    assert text.startswith("KeyError: ")
    assert "[...]" in text.split("\n", 1)[0], "the long message is cut in the head"
    assert "older frames cut" in text
    lines = text.rstrip().splitlines()
    assert lines[-1].startswith("KeyError: ") and lines[-1].endswith("[...]")
    assert 'raise KeyError("x" * 10_000)' in lines[-2], "the frame that raised is kept"
    assert text.count("in _ping") > 10, "frames are kept, not just the message"


def test_format_error_keeps_chained_exceptions_and_survives_a_broken_str() -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    try:
        try:
            raise ValueError("the cause " + "y" * 9000)
        except ValueError as cause:
            raise Unprintable from cause
    except Unprintable as exc:
        text = format_error(exc)
    assert len(text) <= MAX_ERROR_CHARS
    head = text.split("\n", 1)[0]
    assert head.endswith("Unprintable: <unprintable " + Unprintable.__qualname__ + ">")
    assert "The above exception was the direct cause" in text
    assert "ValueError: the cause" in text


def test_warm_stop_releases_claimed_jobs_not_started(memory_store: MemoryAdapter) -> None:
    stop = StopFlag()

    class StopsTheWorker(Job):
        def perform(self) -> None:
            calls.append("ran")
            stop.request()

    first = StopsTheWorker.perform_later()
    others = [Succeeds.perform_later(n) for n in range(3)]
    runner = Worker(memory_store, WorkerSettings(batch_size=4), stop=stop)
    runner.run()
    assert calls == ["ran"]
    assert memory_store.get(first.id) is None
    for record in others:
        job = stored(memory_store, record.id)
        assert job.state is JobState.READY and job.attempts == 0
    assert runner.summary.released == 3


def test_cold_stop_gives_the_running_job_back(memory_store: MemoryAdapter) -> None:
    class Interrupted(Job):
        def perform(self) -> None:
            raise ColdStop("second signal")

    record = Interrupted.perform_later()
    runner = worker(memory_store)
    runner.work_off()
    job = stored(memory_store, record.id)
    assert job.state is JobState.READY and job.attempts == 0 and job.locked_by is None


def test_keyboard_interrupt_in_a_job_is_a_cold_stop(memory_store: MemoryAdapter) -> None:
    class CtrlC(Job):
        def perform(self) -> None:
            raise KeyboardInterrupt

    record = CtrlC.perform_later()
    runner = worker(memory_store)
    runner.run()
    assert runner.stop.cold.is_set()
    assert stored(memory_store, record.id).state is JobState.READY


def test_a_deleted_running_job_counts_as_lock_lost(memory_store: MemoryAdapter) -> None:
    class DeletesItself(Job):
        def perform(self) -> None:
            assert self.record is not None
            memory_store.delete(self.record.id)

    DeletesItself.perform_later()
    summary = worker(memory_store).work_off()
    assert summary.lock_lost == 1 and summary.succeeded == 0


def test_heartbeat_keeps_a_long_job_locked(memory_store: MemoryAdapter) -> None:
    seen: list[list[JobRecord]] = []

    class Slow(Job):
        def perform(self) -> None:
            time.sleep(0.8)
            seen.append(memory_store.claim("thief", None, limit=1, lease=60))

    record = Slow.perform_later()
    summary = worker(memory_store, lease=0.3).work_off()
    assert seen == [[]], "another worker took a job whose lock was being renewed"
    assert summary.succeeded == 1 and memory_store.get(record.id) is None


class FlakyStore(MemoryAdapter):
    """Fails the first ``outages`` claims as an unreachable server would."""

    def __init__(self, outages: int) -> None:
        super().__init__()
        self.outages = outages

    def claim(
        self, worker_id: str, queues: Sequence[str] | None, *, limit: int = 1, lease: float
    ) -> list[JobRecord]:
        if self.outages > 0:
            self.outages -= 1
            raise StorageUnavailable("connection refused", url="redis://:secret@host/0")
        return super().claim(worker_id, queues, limit=limit, lease=lease)


def test_the_worker_survives_an_unreachable_store() -> None:
    store = FlakyStore(outages=3)
    record = store.schedule_one(
        NewJob(name="Succeeds", handler='{"name":"Succeeds","args":[7]}', queue="q", priority=5)
    )
    stop = StopFlag()
    runner = Worker(store, WorkerSettings(sleep_delay=0.05), stop=stop)
    thread = threading.Thread(target=runner.run)
    thread.start()
    deadline = time.monotonic() + 10
    while store.get(record.id) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.request()
    thread.join(5)
    assert calls == [7] and store.outages == 0


def test_run_wakes_on_enqueue_and_stops_promptly(memory_store: MemoryAdapter) -> None:
    stop = StopFlag()
    runner = Worker(memory_store, WorkerSettings(sleep_delay=30), stop=stop)
    thread = threading.Thread(target=runner.run)
    thread.start()
    time.sleep(0.2)
    Succeeds.perform_later("woken")
    deadline = time.monotonic() + 5
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls == ["woken"], "an idle worker slept through an enqueue"
    started = time.monotonic()
    stop.request()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2.0


def test_workers_take_only_their_queues(memory_store: MemoryAdapter) -> None:
    email = Succeeds.set(queue="email").perform_later("e")
    other = Succeeds.set(queue="other").perform_later("o")
    worker(memory_store, queues=("email",)).work_off()
    assert calls == ["e"]
    assert memory_store.get(email.id) is None and memory_store.get(other.id) is not None


class CountingStore(MemoryAdapter):
    def __init__(self) -> None:
        super().__init__()
        self.complete_batches: list[int] = []

    def complete_many(self, acks: Sequence[tuple[str, str]], *, keep: bool = False) -> list[bool]:
        self.complete_batches.append(len(acks))
        return super().complete_many(acks, keep=keep)


def test_a_batch_of_successes_is_recorded_in_one_call() -> None:
    store = CountingStore()
    for n in range(12):
        store.schedule_one(
            NewJob(
                name="Succeeds",
                handler=f'{{"name":"Succeeds","args":[{n}]}}',
                queue="q",
                priority=5,
            )
        )
    summary = Worker(store, WorkerSettings(batch_size=5)).work_off()
    assert summary.succeeded == 12 and calls == list(range(12))
    assert store.complete_batches == [5, 5, 2]
    assert store.counts() == []


def test_cold_stop_in_a_batch_keeps_the_successes(memory_store: MemoryAdapter) -> None:
    class Interrupted(Job):
        def perform(self) -> None:
            raise ColdStop("second signal")

    done = Succeeds.perform_later("first")
    stopped = Interrupted.set(priority=60).perform_later()
    waiting = Succeeds.set(priority=70).perform_later("never")
    runner = worker(memory_store, batch_size=3)
    runner.work_off()
    assert calls == ["first"]
    assert memory_store.get(done.id) is None
    for record in (stopped, waiting):
        job = stored(memory_store, record.id)
        assert job.state is JobState.READY and job.attempts == 0
    assert runner.summary.succeeded == 1 and runner.summary.released == 2


class RenewalFails(MemoryAdapter):
    def extend_many(self, locks: Sequence[tuple[str, str]], *, lease: float) -> list[bool]:
        raise StorageUnavailable("connection reset")


def test_renewals_failing_past_the_lease_stop_the_run() -> None:
    """With the lock lapsed, another worker may run the job: this run stops (it spins in
    Python, so the interruption lands at once) and records nothing."""
    store = RenewalFails()
    ran: list[float] = []

    class Long(Job):
        def perform(self) -> None:
            started = time.monotonic()
            try:
                while time.monotonic() - started < 5:
                    pass
            finally:
                ran.append(time.monotonic() - started)

    store.schedule_one(NewJob(name="Long", handler='{"name":"Long"}', queue="q", priority=5))
    runner = Worker(store, WorkerSettings(lease=0.3))
    assert runner.run_once() == 1
    summary = runner.summary
    assert ran and ran[0] < 2.0, "the run went on after its lock lapsed"
    assert summary.lock_lost == 1 and summary.succeeded == 0 and summary.retried == 0


def test_hooks_still_run_when_a_hook_is_added_between_batches(
    memory_store: MemoryAdapter,
) -> None:
    import queuebox

    seen: list[str] = []
    Succeeds.perform_later("a")
    runner = worker(memory_store)
    runner.run_once()
    queuebox.add_hook("after_success", lambda job: seen.append(job.args[0]))
    Succeeds.perform_later("b")
    runner.run_once()
    assert calls == ["a", "b"] and seen == ["b"]
