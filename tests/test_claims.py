"""Claim sources (queuebox.runner.claims): which one a worker gets, and that each fuses its
round trips without changing what is recorded. The doubles below are the memory store with
the Redis store's optional interfaces, recording every round trip."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from queuebox import Job
from queuebox.backends.base import ClaimAhead, JobRecord, NewJob, PipelinedClaims
from queuebox.backends.memory import MemoryAdapter
from queuebox.errors import StorageUnavailable
from queuebox.runner.claims import (
    ClaimingAhead,
    DirectClaims,
    PipelinedClaimsSource,
    claim_source_for,
)
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import StopFlag
from queuebox.runner.worker import Worker

calls: list[Any] = []


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    calls.clear()


class Recorded(Job):
    def perform(self, value: Any) -> None:
        calls.append(value)


class OneTripStore(MemoryAdapter, PipelinedClaims):
    """``complete_and_claim`` and ``wait_and_claim`` as the Redis store offers them, recording
    (call, acknowledgements sent, jobs claimed, jobs run so far) for each round trip."""

    def __init__(self) -> None:
        super().__init__()
        self.trips: list[tuple[str, int, int, int]] = []

    def trip(self, name: str, acks: int, claimed: int) -> None:
        self.trips.append((name, acks, claimed, len(calls)))

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
        results = MemoryAdapter.complete_many(self, acks, keep=keep)
        claimed = MemoryAdapter.claim(self, worker_id, [queue], limit=limit, lease=lease)
        self.trip("complete_and_claim", len(acks), len(claimed))
        return results, claimed

    def claim(
        self, worker_id: str, queues: Any, *, limit: int = 1, lease: float
    ) -> list[JobRecord]:
        claimed = super().claim(worker_id, queues, limit=limit, lease=lease)
        self.trip("claim", 0, len(claimed))
        return claimed

    def complete_many(self, acks: Sequence[tuple[str, str]], *, keep: bool = False) -> list[bool]:
        self.trip("complete_many", len(acks), 0)
        return super().complete_many(acks, keep=keep)

    def wait_and_claim(
        self, worker_id: str, queue: str, *, limit: int, lease: float, timeout: float
    ) -> list[JobRecord]:
        self.wait_for_work([queue], timeout)
        claimed = MemoryAdapter.claim(self, worker_id, [queue], limit=limit, lease=lease)
        self.trip("wait_and_claim", 0, len(claimed))
        return claimed


class ListBatch(list[JobRecord]):
    def records(self) -> list[JobRecord]:
        return list(self)


class AheadStore(OneTripStore, ClaimAhead):
    """``send_complete_and_claim`` as the Redis store offers it: the acknowledgements and the
    claim happen when the round trip is sent (as on the server), the reply is read later."""

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
        self.trip("send", len(acks), len(claimed))
        return lambda: (results, ListBatch(claimed))


def _schedule(
    store: MemoryAdapter, count: int, queue: str = "q", name: str = "Recorded"
) -> list[str]:
    return [
        store.schedule_one(
            NewJob(name, f'{{"name":"{name}","args":[{n}]}}', queue=queue, priority=50)
        ).id
        for n in range(count)
    ]


def _trips(store: OneTripStore) -> list[tuple[str, int, int]]:
    return [trip[:3] for trip in store.trips]


# -- which source ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("store", "settings", "expected"),
    [
        (MemoryAdapter(), WorkerSettings(queues=("q",), batch_size=5), DirectClaims),
        (OneTripStore(), WorkerSettings(queues=("q",), batch_size=5), PipelinedClaimsSource),
        (OneTripStore(), WorkerSettings(queues=("q", "r")), DirectClaims),
        (OneTripStore(), WorkerSettings(), DirectClaims),
        (AheadStore(), WorkerSettings(queues=("q",), batch_size=5), ClaimingAhead),
        (AheadStore(), WorkerSettings(queues=("q",), batch_size=1), PipelinedClaimsSource),
        (
            AheadStore(),
            WorkerSettings(queues=("q",), batch_size=5, claim_ahead=False),
            PipelinedClaimsSource,
        ),
    ],
)
def test_the_source_follows_the_declared_interfaces_and_the_settings(
    store: MemoryAdapter, settings: WorkerSettings, expected: type
) -> None:
    assert type(claim_source_for(store, settings, worker_id="w", lease=60)) is expected


def test_a_store_with_the_methods_but_no_declaration_gets_the_plain_source() -> None:
    class Undeclared(MemoryAdapter):
        def complete_and_claim(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("never looked up by name")

    source = claim_source_for(
        Undeclared(), WorkerSettings(queues=("q",), batch_size=5), worker_id="w", lease=60
    )
    assert type(source) is DirectClaims


# -- pipelined ---------------------------------------------------------------------------------


def test_work_off_acknowledges_each_batch_with_the_next_claim() -> None:
    store = OneTripStore()
    _schedule(store, 12)
    summary = Worker(store, WorkerSettings(queues=("q",), batch_size=5)).work_off()
    assert summary.succeeded == 12 and calls == list(range(12))
    assert _trips(store) == [
        ("complete_and_claim", 0, 5),
        ("complete_and_claim", 5, 5),
        ("complete_and_claim", 5, 2),
        ("complete_and_claim", 2, 0),
    ]
    assert store.counts() == []


def test_run_once_alone_acknowledges_its_batch() -> None:
    store = AheadStore()
    _schedule(store, 3)
    assert Worker(store, WorkerSettings(queues=("q",), batch_size=5)).run_once() == 3
    assert _trips(store) == [("complete_and_claim", 0, 3), ("complete_many", 3, 0)]
    assert store.counts() == []


def test_a_worker_on_several_queues_claims_and_acknowledges_apart() -> None:
    store = OneTripStore()
    _schedule(store, 3)
    Worker(store, WorkerSettings(queues=("q", "r"), batch_size=5)).work_off()
    assert [trip[0] for trip in store.trips] == ["claim", "complete_many", "claim"]


def _run_in_thread(runner: Worker) -> threading.Thread:
    thread = threading.Thread(target=runner.run)
    thread.start()
    return thread


def _wait_for(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)


def _wait_until_idle(store: OneTripStore) -> None:
    """Until the worker's first claim came back empty: jobs scheduled from then on reach it
    with a wake-up (a slow start must not let its first claim take them instead)."""
    _wait_for(lambda: bool(store.trips))
    assert store.trips[0][2] == 0, store.trips


def test_an_idle_worker_claims_with_the_wake_up_and_acknowledges_before_stopping() -> None:
    store = OneTripStore()
    stop = StopFlag()
    runner = Worker(store, WorkerSettings(queues=("q",), batch_size=5, sleep_delay=5), stop=stop)
    thread = _run_in_thread(runner)
    _wait_until_idle(store)
    _schedule(store, 3)
    _wait_for(lambda: len(calls) == 3)
    stop.request()
    thread.join(5)
    assert calls == [0, 1, 2] and runner.summary.succeeded == 3
    assert ("wait_and_claim", 0, 3) in _trips(store)
    assert store.counts() == [], "every success is acknowledged by the time run() returns"


def test_jobs_that_came_with_a_wake_up_run_before_any_other_round_trip() -> None:
    store = AheadStore()
    stop = StopFlag()
    runner = Worker(store, WorkerSettings(queues=("q",), batch_size=5, sleep_delay=5), stop=stop)
    thread = _run_in_thread(runner)
    _wait_until_idle(store)
    _schedule(store, 2)
    _wait_for(lambda: len(calls) == 2)
    stop.request()
    thread.join(5)
    woke = next(i for i, trip in enumerate(store.trips) if trip[:3] == ("wait_and_claim", 0, 2))
    after = store.trips[woke + 1]
    assert after[3] == 2, f"a round trip went out before the woken jobs ran: {store.trips}"


class StopsOnWakeUp(OneTripStore):
    def __init__(self, stop: StopFlag) -> None:
        super().__init__()
        self.stop = stop

    def wait_and_claim(self, *args: Any, **kwargs: Any) -> list[JobRecord]:
        claimed = super().wait_and_claim(*args, **kwargs)
        if claimed:
            self.stop.request()
        return claimed


def test_jobs_that_came_with_a_wake_up_after_a_stop_request_are_given_back() -> None:
    stop = StopFlag()
    store = StopsOnWakeUp(stop)
    runner = Worker(store, WorkerSettings(queues=("q",), batch_size=5, sleep_delay=5), stop=stop)
    thread = _run_in_thread(runner)
    _wait_until_idle(store)
    _schedule(store, 2)
    thread.join(5)
    assert runner.summary.released == 2 and calls == []
    assert [c.ready for c in store.counts()] == [2]


# -- claiming ahead ----------------------------------------------------------------------------


def test_work_off_claims_the_next_batch_while_one_runs() -> None:
    store = AheadStore()
    _schedule(store, 12)
    summary = Worker(store, WorkerSettings(queues=("q",), batch_size=5)).work_off()
    assert summary.succeeded == 12 and calls == list(range(12))
    assert _trips(store) == [
        ("complete_and_claim", 0, 5),
        ("send", 0, 5),  # sent before the first batch ran...
        ("send", 5, 2),  # ...each carrying the acknowledgements of the batch before
        ("send", 5, 0),
        ("complete_and_claim", 2, 0),  # the queue ran dry: the last batch's acknowledgements
    ]
    sends = [trip[3] for trip in store.trips if trip[0] == "send"]
    assert sends == [0, 5, 10], "each round trip went out as a batch started"
    assert store.counts() == []


def test_claim_ahead_can_be_switched_off() -> None:
    store = AheadStore()
    _schedule(store, 6)
    Worker(store, WorkerSettings(queues=("q",), batch_size=3, claim_ahead=False)).work_off()
    assert calls == list(range(6)) and "send" not in {trip[0] for trip in store.trips}


def test_batches_of_one_never_claim_ahead() -> None:
    store = AheadStore()
    _schedule(store, 3)
    Worker(store, WorkerSettings(queues=("q",), batch_size=1)).work_off()
    assert calls == [0, 1, 2] and "send" not in {trip[0] for trip in store.trips}


def test_a_stop_gives_back_the_batch_claimed_ahead() -> None:
    stop = StopFlag()

    class StopsAfterOne(Job):
        def perform(self, value: int) -> None:
            calls.append(value)
            stop.request()

    store = AheadStore()
    _schedule(store, 10, name="StopsAfterOne")
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

    ids = _schedule(store, 4, name="SlowThenThief")
    summary = Worker(store, WorkerSettings(queues=("q",), batch_size=2, lease=0.3)).work_off()
    # [0, 1] ran; [2, 3] was claimed ahead, its locks lapsed while job 0 ran and the thief
    # took them: the worker renews them before running them, finds them gone, runs neither
    assert calls == [0, ("stolen", sorted(ids[2:])), 1]
    assert summary.succeeded == 2 and summary.lock_lost == 2
    assert {job.locked_by for job in store.list_jobs()} == {"thief"}


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
    settings = WorkerSettings(queues=("q",), batch_size=3, lease=1.0)
    first = Worker(store, settings).work_off()
    # the lost round trip had locked jobs 6-8 for this worker: they wait for their lease
    assert sorted(calls) == list(range(6))
    assert first.succeeded + first.lock_lost == 6, "every success was acknowledged, or tried"
    time.sleep(1.1)
    Worker(store, settings).work_off()
    assert sorted(calls) == list(range(9)), "every job ran once: none lost, none twice"
    assert store.counts() == []
