"""Workers SIGKILLed at random while they drain a backlog: nothing is lost, and every
duplicate run is the job a killed worker had in hand. A job that kills its worker every time
is failed after exactly ``max_attempts`` runs."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable

import pytest

from queuebox.backends.base import FlowControl, JobState, NewJob
from queuebox.payload import encode_handler

from .conftest import Line, Proc, Project, new_jobs, pick, runs_by_job, scale, wait_until

pytestmark = pytest.mark.chaos

JOBS = scale(1000, 5000)
JOB_SECONDS = scale(0.05, 0.03)
WORKERS = 4
KILL_EVERY = 2.0
BATCH = 5
LEASE = 2.0


def _kill_until(
    project: Project,
    workers: list[Proc],
    rng: random.Random,
    done: Callable[[], bool],
    *,
    deadline: float,
    stalled: Callable[[], str],
) -> None:
    """Until ``done``: every 1-3 s SIGKILL a random live worker and start a new one."""
    while not done():
        assert time.monotonic() < deadline, stalled()
        time.sleep(rng.uniform(0.5, 1.5) * KILL_EVERY)
        victim = pick(rng, workers)
        if victim is None or done():
            continue
        project.sigkill(victim)
        workers.remove(victim)
        workers.append(project.worker(name=f"w{len(project.procs)}"))


@pytest.mark.timeout(scale(150, 900))
@pytest.mark.parametrize("concurrency", [1, 16])
def test_random_sigkills_lose_nothing(project: Project, concurrency: int) -> None:
    # Workers on the jobs' one queue: on Redis they claim the next batch while one runs; with
    # concurrency, each holds up to 16 runs in flight when it is killed.
    project.configure(
        queue="default",
        lease=LEASE,
        batch_size=BATCH,
        sleep_delay=0.5,
        max_attempts=50,
        concurrency=concurrency,
    )
    store = project.store.adapter
    seconds = JOB_SECONDS * (8 if concurrency > 1 else 1)  # as long a drain, more in flight
    ids = [record.id for record in store.schedule(new_jobs("Note", [seconds], JOBS))]
    workers = [project.worker(name=f"w{i}") for i in range(WORKERS)]
    rng = random.Random(7)
    started = time.monotonic()
    deadline = started + scale(120, 800)

    def done() -> bool:
        return len(runs_by_job(project.ledger())) >= JOBS

    _kill_until(
        project,
        workers,
        rng,
        done,
        deadline=deadline,
        stalled=lambda: f"only {len(runs_by_job(project.ledger()))} ran",
    )
    # Jobs a killed worker ran but did not acknowledge come back after the lease and run again.
    wait_until(project.store.is_empty, 60, "the store to be empty")
    elapsed = time.monotonic() - started

    lines = project.ledger()
    runs = runs_by_job(lines)
    assert set(runs) == set(ids), f"lost: {sorted(set(ids) - set(runs))[:20]}"
    duplicates = {job: found for job, found in runs.items() if len(found) > 1}
    in_hand: Counter[int] = Counter()
    for job, found in duplicates.items():
        for earlier in found[:-1]:
            assert earlier.pid in project.killed, f"{job} ran twice without a kill: {found}"
            in_hand[earlier.pid] += 1
        attempts = [line.attempt for line in found]
        assert attempts == sorted(set(attempts)), f"{job}: attempts {attempts}"
    # What a killed worker ran without its acknowledgement reaching the store: the batch in
    # hand, and on a store that claims ahead (queuebox.runner.claims) the batch before it,
    # whose acknowledgement may still have been in flight; with concurrency, the runs in
    # flight and the successes waiting to go out with the next claim.
    if concurrency > 1:
        limit = 2 * concurrency
    else:
        limit = 2 * BATCH if project.store.kind == "redis" else BATCH
    assert all(count <= limit for count in in_hand.values()), in_hand
    codes = project.stop_all()
    assert set(codes.values()) <= {0}, project.logs()
    print(
        f"\n[chaos] {project.store.kind} -c {concurrency}: {JOBS} jobs, "
        f"{len(project.killed)} workers killed, "
        f"{sum(len(f) - 1 for f in duplicates.values())} duplicate runs of "
        f"{len(duplicates)} jobs, 0 lost, {elapsed:.1f}s"
    )


POISON_ATTEMPTS = 3


@pytest.mark.timeout(scale(90, 300))
def test_poison_job_fails_after_max_attempts(project: Project) -> None:
    project.configure(lease=1.0, batch_size=1, sleep_delay=0.3, max_attempts=POISON_ATTEMPTS)
    store = project.store.adapter
    [poison] = store.schedule(new_jobs("Poison", [], 1, priority=1))
    good = [record.id for record in store.schedule(new_jobs("Note", [0.01], scale(30, 200)))]
    workers = [project.worker(name=f"w{i}") for i in range(2)]

    def failed() -> bool:
        record = store.get(poison.id)
        return record is not None and record.state is JobState.FAILED

    deadline = time.monotonic() + 60
    while not (failed() and set(good) <= set(runs_by_job(project.ledger()))):
        assert time.monotonic() < deadline, project.logs()
        for proc in list(workers):  # the supervisor's part: replace a dead worker
            if not proc.alive():
                project.killed.add(proc.pid)
                workers.remove(proc)
                workers.append(project.worker(name=f"w{len(project.procs)}"))
        time.sleep(0.1)

    record = store.get(poison.id)
    assert record is not None and record.state is JobState.FAILED
    poison_runs = runs_by_job(project.ledger())[poison.id]
    assert [line.attempt for line in poison_runs] == list(range(1, POISON_ATTEMPTS + 1))
    assert len({line.pid for line in poison_runs}) == POISON_ATTEMPTS  # one dead worker each
    assert record.last_error is not None
    assert record.last_error.startswith("WorkerLost: "), record.last_error
    assert f"out of attempts ({POISON_ATTEMPTS})" in record.last_error
    # The claim that found it out of attempts counted one more; perform never ran for it.
    assert record.attempts == POISON_ATTEMPTS + 1
    # The last good jobs' successes are recorded a moment after their ledger lines.
    wait_until(
        lambda: [(c.queue, c.failed, c.total) for c in store.counts()] == [("default", 1, 1)],
        10,
        "the store to hold only the failed poison job",
    )
    assert set(project.stop_all().values()) <= {0}, project.logs()


LIMIT = 3  # Limited.max_concurrency in the chaos jobs module


def _limited_jobs(n: int, seconds: float) -> list[NewJob]:
    handler = encode_handler("Limited", (seconds,), {})
    job = NewJob(
        name="Limited",
        handler=handler,
        queue="default",
        priority=50,
        limit_key="Limited",
        max_concurrency=LIMIT,
    )
    return [job] * n


def _peak_overlap(lines: list[Line]) -> int:
    """The most runs of completed (start, done) pairs that overlapped in time."""
    starts = {(s.job_id, s.attempt, s.pid): s.clock for s in lines if s.kind == "start"}
    edges: list[tuple[float, int]] = []
    for line in lines:
        began = starts.get((line.job_id, line.attempt, line.pid))
        if line.kind == "done" and began is not None:
            edges += [(began, 1), (line.clock, -1)]
    peak = level = 0
    for _, step in sorted(edges, key=lambda edge: (edge[0], edge[1])):  # ends before starts
        level += step
        peak = max(peak, level)
    return peak


@pytest.mark.timeout(scale(150, 600))
def test_sigkills_under_a_concurrency_limit_lose_nothing_and_leak_no_slot(
    project: Project,
) -> None:
    store = project.store.adapter
    if not isinstance(store, FlowControl):
        pytest.skip(f"{type(store).__name__} does not declare FlowControl")
    project.configure(
        queue="default", lease=LEASE, batch_size=BATCH, sleep_delay=0.5, concurrency=4
    )
    count = scale(150, 600)
    limited = [r.id for r in store.schedule(_limited_jobs(count, 0.05))]
    free = [r.id for r in store.schedule(new_jobs("Note", [0.01], count))]
    workers = [project.worker(name=f"w{i}") for i in range(WORKERS)]
    rng = random.Random(11)
    deadline = time.monotonic() + scale(120, 500)

    def done() -> bool:
        lines = project.ledger()
        return set(runs_by_job(lines, "done")) >= set(limited) and set(runs_by_job(lines)) >= set(
            free
        )

    _kill_until(
        project, workers, rng, done, deadline=deadline, stalled=lambda: project.logs()[-4000:]
    )
    wait_until(project.store.is_empty, 60, "the store to be empty")
    lines = project.ledger()
    # A killed worker's run stops with it; its lock holds the slot until the lease lapses,
    # so the runs that finished never overlap more than the limit.
    peak = _peak_overlap(lines)
    assert peak <= LIMIT, f"{peak} Limited runs overlapped; the limit is {LIMIT}"
    assert peak == LIMIT, f"the limit was never reached (peak {peak}): the test proves nothing"

    # No slot leaked: after every kill, LIMIT new runs still start together.
    before = len(lines)
    again = [r.id for r in store.schedule(_limited_jobs(LIMIT, 1.5))]
    wait_until(
        lambda: set(runs_by_job(project.ledger(), "done")) >= set(again), 30, "the last runs"
    )
    assert _peak_overlap(project.ledger()[before:]) == LIMIT, "a slot leaked"
    assert set(project.stop_all().values()) <= {0}, project.logs()
    print(
        f"\n[chaos] {project.store.kind} limited: {2 * count} jobs, "
        f"{len(project.killed)} workers killed, peak {peak} of {LIMIT}, 0 lost"
    )
