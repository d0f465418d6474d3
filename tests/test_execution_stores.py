"""Real work on the real stores, with real worker processes: many jobs in flight, async jobs,
max_runtime enforced without a run ever overlapping itself, cancellation from the command
line, and a job that will not stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Process, enqueue, ledger, peak_overlap, runs, wait_until, write_project

from queuebox import JobState, from_url
from queuebox.backends.base import Adapter, Cancellation


@pytest.fixture
def project(tmp_path: Path, store_url: str) -> Path:
    return write_project(tmp_path, url=store_url)


@pytest.fixture
def store(store_url: str) -> Iterator[Adapter]:
    adapter = from_url(store_url)
    yield adapter
    adapter.close()


def _queuebox(project: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "queuebox", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_sync_and_async_jobs_run_32_at_a_time(project: Path, store: Adapter) -> None:
    enqueue(store, "Sleep", [0.3], n=48)
    enqueue(store, "AsyncSleep", [0.3], n=48)
    started = time.monotonic()
    done = _queuebox(project, "--log-level", "WARNING", "workoff", "-c", "32")
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    spans = runs(project)
    assert len(spans) == 96 and len({job for job, _, _ in spans}) == 96
    assert peak_overlap(spans) <= 32, "more runs at once than the concurrency"
    assert peak_overlap(spans) >= 16, "the runs did not overlap"
    # 96 jobs of 0.3 s on 32 slots: 0.9 s of work, plus the interpreter's start
    assert elapsed < 8, f"took {elapsed:.1f}s"
    assert store.counts() == []


def test_a_run_past_max_runtime_is_stopped_and_never_overlaps_itself(
    project: Path, store: Adapter
) -> None:
    [job_id] = enqueue(store, "Spin", [8])
    workers = [
        Process(project, "work", "-c", "4", "--max-runtime", "1", "--max-attempts", "3")
        for _ in range(2)
    ]
    try:
        wait_until(
            lambda: (job := store.get(job_id)) is not None and job.state is JobState.FAILED,
            timeout=60,
            what="the job to run out of attempts",
        )
    finally:
        for worker in workers:
            worker.signal(signal.SIGTERM)
        for worker in workers:
            assert worker.wait() == 0, worker.output()
    spans = runs(project)
    assert len(spans) == 3, spans
    assert all(end - start < 2.5 for _, start, end in spans), "a run went past max_runtime"
    assert peak_overlap(spans) == 1, "the job ran twice at once"
    ends = [line.split()[0] for line in ledger(project) if not line.startswith("start")]
    assert ends == ["JobTimeout"] * 3
    final = store.get(job_id)
    assert final is not None and final.last_error is not None
    assert final.last_error.startswith("JobTimeout: ran longer than max_runtime (1s)")


@pytest.mark.parametrize("job", ["Spin", "AsyncWait"])
@pytest.mark.parametrize("concurrency", ["1", "8"])
def test_queuebox_cancel_stops_a_running_job_within_a_second(
    project: Path, store: Adapter, job: str, concurrency: str
) -> None:
    if not isinstance(store, Cancellation):
        pytest.fail(f"{type(store).__name__} must declare Cancellation")
    [running] = enqueue(store, job, [60])
    [waiting] = enqueue(store, job, [60], queue="later")
    worker = Process(project, "work", "-q", "default", "-c", concurrency)
    try:
        wait_until(lambda: any(line.startswith("start") for line in ledger(project)))
        asked = time.monotonic()
        done = _queuebox(project, "cancel", running, waiting)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "cancelling" in done.stdout and "cancelled" in done.stdout
        wait_until(
            lambda: (
                (record := store.get(running)) is not None and record.state is JobState.CANCELLED
            ),
            timeout=10,
        )
        took = time.monotonic() - asked
    finally:
        worker.signal(signal.SIGTERM)
        assert worker.wait() == 0, worker.output()
    assert took < 1.5, f"the running job was stopped {took:.2f}s after queuebox cancel"
    ends = [line.split() for line in ledger(project) if not line.startswith("start")]
    seen = "CancelledError" if job == "AsyncWait" else "JobCancelled"  # asyncio's own way
    assert [(end[0], end[-1]) for end in ends] == [(seen, "True")]
    later = store.get(waiting)
    assert later is not None and later.state is JobState.CANCELLED
    again = _queuebox(project, "cancel", running)
    assert again.returncode == 1 and "already finished" in again.stderr


def test_a_job_that_will_not_stop_ends_its_process_after_its_outcome(
    project: Path, store: Adapter
) -> None:
    [job_id] = enqueue(store, "Stuck", [30])
    [other] = enqueue(store, "Record", ["after"])
    worker = Process(
        project, "work", "--max-runtime", "0.5", "--stop-grace", "0.5", "--batch-size", "2"
    )
    try:
        code = worker.wait(timeout=30)
    finally:
        worker.kill()
    assert code == 75, worker.output()
    record = store.get(job_id)
    assert record is not None and record.state is JobState.SCHEDULED, record
    assert record.last_error is not None and record.last_error.startswith("JobTimeout")
    assert record.locked_by is None, "the lock was given back with the outcome"
    given_back = store.get(other)
    assert given_back is not None and given_back.state is JobState.READY
    assert given_back.attempts == 0
    assert "did not stop within" in worker.output()
