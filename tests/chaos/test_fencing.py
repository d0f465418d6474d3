"""Lock tokens fence off a worker that lost its lease; stop signals; workers with a wrong clock.

- Fencing: a worker frozen with SIGSTOP past its lease loses the job to another worker, which
  completes it; once thawed, the first worker's writes are refused and change nothing.
- Signals: the first SIGTERM lets the running job finish and exits 0; a second one gives the
  lock back and another worker runs the job at once.
- Clock skew: workers whose wall clock is 5 minutes fast or slow neither start a delayed job
  early nor take a live lock, because every comparison uses the store's clock.
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest

from queuebox.backends.base import JobState, NewJob
from queuebox.payload import encode_handler

from .conftest import SKEW_MODULE, Project, new_jobs, runs_by_job, wait_until

pytestmark = pytest.mark.chaos


def _hold(project: Project, first: float, later: float = 0.0, *, fail_first: bool = False) -> str:
    handler = encode_handler("Hold", (first, later, fail_first), {})
    job = NewJob(name="Hold", handler=handler, queue="default", priority=1)
    return project.store.adapter.schedule([job])[0].id


def _lines(project: Project, kind: str, job_id: str) -> list[tuple[int, int]]:
    """(attempt, pid) of each ``kind`` line of ``job_id``."""
    return [
        (line.attempt, line.pid)
        for line in project.ledger()
        if line.kind == kind and line.job_id == job_id
    ]


@pytest.mark.timeout(90)
def test_a_paused_worker_is_fenced_off(project: Project) -> None:
    project.configure(lease=2.0, sleep_delay=0.3, delete_successful_jobs=False)
    store = project.store.adapter
    job_id = _hold(project, first=4.0, later=0.0, fail_first=True)
    first = project.worker(name="first")
    wait_until(lambda: bool(_lines(project, "start", job_id)), 30, "the first start")
    first.signal(signal.SIGSTOP)
    paused_at = time.monotonic()
    second = project.worker(name="second")
    wait_until(lambda: bool(_lines(project, "done", job_id)), 30, "the second worker's run")
    # The lease runs from the last renewal (at most lease/3 before the pause).
    assert time.monotonic() - paused_at >= 2.0 * 2 / 3, "taken before the lease expired"
    wait_until(
        lambda: getattr(store.get(job_id), "state", None) is JobState.COMPLETED,
        15,
        "the job to be completed",
    )
    before = store.get(job_id)
    assert before is not None and before.attempts == 2
    assert before.last_error is not None and before.last_error.startswith("WorkerLost")

    first.signal(signal.SIGCONT)
    # The thawed worker finishes its attempt (it raises) and tries to reschedule it: refused.
    wait_until(lambda: "the lock was lost" in first.output(), 30, "the refused write")
    time.sleep(0.5)
    after = store.get(job_id)
    assert after == before, "a fenced-off worker changed the record"
    assert _lines(project, "start", job_id) == [(1, first.pid), (2, second.pid)]
    assert _lines(project, "done", job_id) == [(2, second.pid)]
    assert "taken over by another worker" in first.output()  # its heartbeat noticed too
    assert project.stop_all() == {"first": 0, "second": 0}, project.logs()


@pytest.mark.timeout(60)
def test_first_sigterm_lets_the_job_finish(project: Project) -> None:
    project.configure(lease=2.0, sleep_delay=0.3)
    job_id = _hold(project, first=1.5)
    worker = project.worker(name="worker")
    wait_until(lambda: bool(_lines(project, "start", job_id)), 30, "the start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    assert [line.kind for line in project.ledger()] == ["start", "done"]
    assert project.store.adapter.get(job_id) is None


@pytest.mark.timeout(60)
def test_second_sigterm_gives_the_lock_back(project: Project) -> None:
    project.configure(lease=30.0, sleep_delay=5.0)  # a lapsed lease cannot explain a fast rerun
    store = project.store.adapter
    job_id = _hold(project, first=60.0)
    first = project.worker(name="first")
    wait_until(lambda: bool(_lines(project, "start", job_id)), 30, "the first start")
    second = project.worker(name="second")
    time.sleep(2.0)  # the second worker is up and idle, waiting for work
    first.signal(signal.SIGTERM)
    time.sleep(0.3)
    first.signal(signal.SIGTERM)
    first.wait(30)
    given_back = time.monotonic()
    assert "cold stop" in first.output(), first.output()
    wait_until(lambda: len(_lines(project, "start", job_id)) == 2, 15, "the second run")
    waited = time.monotonic() - given_back
    # Redis and PostgreSQL wake the idle worker; SQLite's waiter notices the commit in ~0.1 s.
    assert waited < 3.0, f"the released job waited {waited:.1f}s"
    assert _lines(project, "start", job_id) == [(1, first.pid), (1, second.pid)]
    record = store.get(job_id)
    assert record is not None and record.state is JobState.RUNNING and record.attempts == 1
    second.signal(signal.SIGTERM)
    time.sleep(0.3)
    second.signal(signal.SIGTERM)
    second.wait(30)
    record = store.get(job_id)
    assert record is not None and record.state is JobState.READY and record.attempts == 0


SKEW = 300.0


@pytest.mark.timeout(90)
def test_skewed_clocks_neither_run_early_nor_steal(project: Project, tmp_path: Path) -> None:
    project.configure(lease=2.0, sleep_delay=0.3)
    store = project.store.adapter
    (tmp_path / "skew").mkdir()
    (tmp_path / "skew" / "sitecustomize.py").write_text(SKEW_MODULE)
    hold = _hold(project, first=5.0)  # renewed every 2/3 s by its honest worker
    honest = project.worker(name="honest")
    wait_until(lambda: bool(_lines(project, "start", hold)), 30, "the held job to start")
    skewed = {
        skew: project.worker(
            name=f"skew{skew:+.0f}",
            env=project.env(PYTHONPATH=str(tmp_path / "skew"), CHAOS_CLOCK_SKEW=str(skew)),
        )
        for skew in (SKEW, -SKEW)
    }
    [delayed] = store.schedule(
        [
            NewJob(
                name="Note",
                handler=encode_handler("Note", (), {}),
                queue="default",
                priority=1,
                delay=60.0,
            )
        ]
    )
    notes = [record.id for record in store.schedule(new_jobs("Note", [0.05], 20))]
    wait_until(lambda: bool(_lines(project, "done", hold)), 30, "the held job to finish")
    wait_until(lambda: set(notes) <= set(runs_by_job(project.ledger())), 30, "the notes")

    pids = {proc.pid: skew for skew, proc in skewed.items()}
    note_runs = [line for job in notes for line in runs_by_job(project.ledger())[job]]
    seen = {pids[line.pid] for line in note_runs if line.pid in pids}
    assert seen == {SKEW, -SKEW}, "both skewed workers should have run ready jobs"
    for line in note_runs:  # the skew really applied inside the worker processes
        offset = line.clock - time.time()
        expected = pids.get(line.pid, 0.0)
        assert abs(offset - expected) < 60, (line, offset, expected)
    assert _lines(project, "start", hold) == [(1, honest.pid)], "a skewed worker took the lock"
    record = store.get(delayed.id)
    assert record is not None and record.state is JobState.SCHEDULED and record.attempts == 0
    assert record.run_at - store.now() > timedelta(seconds=40)
    assert delayed.id not in runs_by_job(project.ledger())
    assert set(project.stop_all().values()) == {0}, project.logs()
