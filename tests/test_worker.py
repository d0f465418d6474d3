"""The worker's policy, on the in-memory store: outcomes, backoff, limits, stops, leases."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from queuebox import Job, JobState
from queuebox.backends.base import WORKER_LOST, JobRecord, NewJob
from queuebox.backends.memory import MemoryAdapter
from queuebox.errors import StorageUnavailable
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
    # The in-memory store's rows are plain objects; moving run_at back is what time would do.
    row = adapter._rows[int(job_id)]
    row.run_at = adapter.now()


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


def test_format_error_is_bounded_and_keeps_the_raising_frame() -> None:
    def deep(n: int) -> None:
        if n == 0:
            raise KeyError("x" * 10_000)
        deep(n - 1)

    try:
        deep(200)
    except KeyError as exc:
        text = format_error(exc)
    assert len(text) <= MAX_ERROR_CHARS
    assert text.startswith("KeyError: ")
    assert "[...]" in text.split("\n", 1)[0]
    assert "older frames cut" in text
    assert text.rstrip().endswith("x" * 20 + "'") or "KeyError" in text.splitlines()[-1]


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


def test_max_runtime_stops_the_renewals(memory_store: MemoryAdapter) -> None:
    stolen: list[list[JobRecord]] = []

    class Overruns(Job):
        def perform(self) -> None:
            time.sleep(1.0)
            stolen.append(memory_store.claim("thief", None, limit=1, lease=60))

    record = Overruns.perform_later()
    summary = worker(memory_store, lease=0.3, max_runtime=0.3).work_off()
    assert [job.id for job in stolen[0]] == [record.id]
    assert summary.lock_lost == 1


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
    def extend(self, job_id: str, lock_token: str, *, lease: float) -> bool:
        raise StorageUnavailable("connection reset")


def test_renewals_failing_past_the_lease_give_the_job_up() -> None:
    store = RenewalFails()
    seen: list[bool] = []

    class Long(Job):
        def perform(self) -> None:
            time.sleep(1.0)
            assert self.record is not None
            seen.append(runner._heartbeat.lost(self.record.id))

    store.schedule_one(NewJob(name="Long", handler='{"name":"Long"}', queue="q", priority=5))
    runner = Worker(store, WorkerSettings(lease=0.3))
    runner.work_off()
    assert seen == [True], "the heartbeat kept the job after its lease lapsed"


# -- stores that claim with the acknowledgement or with the wake-up (as Redis does) ------------


class OneTripStore(MemoryAdapter):
    """``complete_and_claim`` and ``wait_and_claim`` as the Redis store offers them, built on
    the memory store, recording what each round trip carried."""

    def __init__(self) -> None:
        super().__init__()
        self.trips: list[tuple[str, int, int]] = []  # (call, acks sent, jobs claimed)

    def complete_and_claim(
        self,
        acks: Sequence[tuple[str, str]],
        *,
        keep: bool = False,
        worker_id: str,
        queue: str,
        limit: int,
        lease: float,
    ) -> tuple[list[bool], list[JobRecord]]:
        results = super().complete_many(acks, keep=keep)
        claimed = super().claim(worker_id, [queue], limit=limit, lease=lease)
        self.trips.append(("complete_and_claim", len(acks), len(claimed)))
        return results, claimed

    def claim(
        self, worker_id: str, queues: Any, *, limit: int = 1, lease: float
    ) -> list[JobRecord]:
        claimed = super().claim(worker_id, queues, limit=limit, lease=lease)
        self.trips.append(("claim", 0, len(claimed)))
        return claimed

    def complete_many(self, acks: Sequence[tuple[str, str]], *, keep: bool = False) -> list[bool]:
        self.trips.append(("complete_many", len(acks), 0))
        return super().complete_many(acks, keep=keep)

    def wait_and_claim(
        self, worker_id: str, queue: str, *, limit: int, lease: float, timeout: float
    ) -> list[JobRecord]:
        self.wait_for_work([queue], timeout)
        claimed = super().claim(worker_id, [queue], limit=limit, lease=lease)
        self.trips.append(("wait_and_claim", 0, len(claimed)))
        return claimed


def _schedule(store: MemoryAdapter, count: int, queue: str = "q") -> None:
    for n in range(count):
        store.schedule_one(
            NewJob(
                name="Succeeds",
                handler=f'{{"name":"Succeeds","args":[{n}]}}',
                queue=queue,
                priority=50,
            )
        )


def test_work_off_acknowledges_each_batch_with_the_next_claim() -> None:
    store = OneTripStore()
    _schedule(store, 12)
    summary = Worker(store, WorkerSettings(queues=("q",), batch_size=5)).work_off()
    assert summary.succeeded == 12 and calls == list(range(12))
    assert store.trips == [
        ("claim", 0, 5),
        ("complete_and_claim", 5, 5),
        ("complete_and_claim", 5, 2),
        ("complete_and_claim", 2, 0),
    ]
    assert store.counts() == []


def test_run_once_alone_acknowledges_its_batch() -> None:
    store = OneTripStore()
    _schedule(store, 3)
    assert Worker(store, WorkerSettings(queues=("q",), batch_size=5)).run_once() == 3
    assert store.trips == [("claim", 0, 3), ("complete_many", 3, 0)]
    assert store.counts() == []


def test_a_worker_on_several_queues_claims_and_acknowledges_apart() -> None:
    store = OneTripStore()
    _schedule(store, 3)
    Worker(store, WorkerSettings(queues=("q", "r"), batch_size=5)).work_off()
    assert [trip[0] for trip in store.trips] == ["claim", "complete_many", "claim"]


def test_an_idle_worker_claims_with_the_wake_up_and_acknowledges_before_stopping() -> None:
    store = OneTripStore()
    stop = StopFlag()
    runner = Worker(store, WorkerSettings(queues=("q",), batch_size=5, sleep_delay=5), stop=stop)
    thread = threading.Thread(target=runner.run)
    thread.start()
    time.sleep(0.1)
    _schedule(store, 3)
    deadline = time.monotonic() + 5
    while len(calls) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.request()
    thread.join(5)
    assert calls == [0, 1, 2] and runner.summary.succeeded == 3
    assert ("wait_and_claim", 0, 3) in store.trips
    assert store.counts() == [], "every success is acknowledged by the time run() returns"


def test_jobs_claimed_with_a_wake_up_after_a_stop_request_are_given_back() -> None:
    store = OneTripStore()
    stop = StopFlag()
    runner = Worker(store, WorkerSettings(queues=("q",), batch_size=5), stop=stop)
    _schedule(store, 2)
    runner._pending = store.claim(runner.worker_id, ["q"], limit=5, lease=60)
    stop.request()
    assert runner.run().released == 2 and calls == []
    assert [c.ready for c in store.counts()] == [2]


class ListBatch(list[JobRecord]):
    def records(self) -> list[JobRecord]:
        return list(self)


class AheadStore(OneTripStore):
    """``send_complete_and_claim`` as the Redis store offers it: the acknowledgements and the
    claim happen when the round trip is sent (as on the server), the reply is read later."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs_run_at_send: list[int] = []

    def send_complete_and_claim(
        self,
        acks: Sequence[tuple[str, str]],
        *,
        keep: bool = False,
        worker_id: str,
        queue: str,
        limit: int,
        lease: float,
    ) -> Callable[[], tuple[list[bool], ListBatch]]:
        results = MemoryAdapter.complete_many(self, acks, keep=keep)
        claimed = MemoryAdapter.claim(self, worker_id, [queue], limit=limit, lease=lease)
        self.trips.append(("send", len(acks), len(claimed)))
        self.jobs_run_at_send.append(len(calls))
        return lambda: (results, ListBatch(claimed))


def test_work_off_claims_the_next_batch_while_one_runs() -> None:
    store = AheadStore()
    _schedule(store, 12)
    summary = Worker(store, WorkerSettings(queues=("q",), batch_size=5)).work_off()
    assert summary.succeeded == 12 and calls == list(range(12))
    assert store.trips == [
        ("claim", 0, 5),
        ("send", 0, 5),  # sent before the first batch ran...
        ("send", 5, 2),  # ...each carrying the acknowledgements of the batch before
        ("send", 5, 0),
        ("complete_and_claim", 2, 0),  # the queue ran dry: the last batch's acknowledgements
    ]
    assert store.jobs_run_at_send == [0, 5, 10], "each round trip went out as a batch started"
    assert store.counts() == []


def test_batches_of_one_never_claim_ahead() -> None:
    store = AheadStore()
    _schedule(store, 3)
    Worker(store, WorkerSettings(queues=("q",), batch_size=1)).work_off()
    assert calls == [0, 1, 2] and "send" not in {trip[0] for trip in store.trips}


def _schedule_calls(store: MemoryAdapter, name: str, count: int, queue: str) -> list[str]:
    return [
        store.schedule_one(
            NewJob(name, f'{{"name":"{name}","args":[{n}]}}', queue=queue, priority=50)
        ).id
        for n in range(count)
    ]


def test_a_stop_gives_back_the_batch_claimed_ahead() -> None:
    stop = StopFlag()

    class StopsAfterOne(Job):
        def perform(self, value: int) -> None:
            calls.append(value)
            stop.request()

    store = AheadStore()
    _schedule_calls(store, "StopsAfterOne", 10, "q")
    summary = Worker(store, WorkerSettings(batch_size=3, queues=("q",)), stop=stop).run()
    assert calls == [0]
    # the two jobs left in the batch in hand, and the three claimed ahead
    assert summary.succeeded == 1 and summary.released == 5
    assert [(c.ready, c.running) for c in store.counts()] == [(9, 0)]


def test_a_batch_claimed_ahead_behind_a_slow_batch_runs_only_what_it_still_owns() -> None:
    store = AheadStore()

    class SlowThenThief(Job):
        def perform(self, value: int) -> None:
            calls.append(value)
            if value == 0:
                time.sleep(0.5)  # the batch claimed ahead was locked for 0.3 s
                stolen = store.claim("thief", ["q"], limit=10, lease=60)
                calls.append(("stolen", sorted(job.id for job in stolen)))

    ids = _schedule_calls(store, "SlowThenThief", 4, "q")
    summary = Worker(store, WorkerSettings(queues=("q",), batch_size=2, lease=0.3)).work_off()
    # [0, 1] ran; [2, 3] was claimed ahead, its locks lapsed while job 0 ran and the thief
    # took them: the worker renews them before running them, finds them gone, runs neither
    assert calls == [0, ("stolen", sorted(ids[2:])), 1]
    assert summary.succeeded == 2 and summary.lock_lost == 2
    assert {job.locked_by for job in store.list_jobs()} == {"thief"}


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


def test_jobs_that_came_with_a_wake_up_run_before_any_claim_ahead() -> None:
    store = AheadStore()
    runner = Worker(store, WorkerSettings(queues=("q",), batch_size=5))
    _schedule(store, 2)
    runner._pending = store.claim(runner.worker_id, ["q"], limit=5, lease=60)
    runner._defer_acks = True  # as inside run()
    assert runner.run_once() == 2 and calls == [0, 1]
    assert [trip[0] for trip in store.trips] == ["claim"], "nothing was sent before they ran"


class LosesOneReply(AheadStore):
    """The second round trip claimed ahead reaches the store, but its reply is lost."""

    def __init__(self) -> None:
        super().__init__()
        self.sends = 0

    def send_complete_and_claim(self, acks: Any, **kwargs: Any) -> Any:
        receive = super().send_complete_and_claim(acks, **kwargs)
        self.sends += 1
        if self.sends != 2:
            return receive

        def lost() -> Any:
            raise StorageUnavailable("connection reset while reading the reply")

        return lost


def test_a_lost_reply_is_sent_again_and_the_batch_it_claimed_comes_back() -> None:
    store = LosesOneReply()
    _schedule(store, 9)
    settings = WorkerSettings(queues=("q",), batch_size=3, lease=0.3)
    Worker(store, settings).work_off()
    # the lost round trip had locked jobs 6-8 for this worker: they wait for their lease
    assert sorted(calls) == list(range(6))
    time.sleep(0.4)
    Worker(store, settings).work_off()
    assert sorted(calls) == list(range(9)), "every job ran once: none lost, none twice"
    assert store.counts() == []
