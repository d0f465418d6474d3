"""Stop signals: which are warm, which cold, and that a closed terminal (SIGHUP) stops a
worker gracefully instead of killing it with its jobs locked."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Process, enqueue, ledger, wait_until, write_project

from queuebox import JobState, from_url
from queuebox.backends.base import Adapter
from queuebox.runner.signals import StopFlag, handle_stop_signals


def _deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # Python runs the handler at the next bytecode boundary


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGUSR1])
def test_warm_only_signals_never_make_a_cold_stop(signum: int) -> None:
    flag = StopFlag()
    with handle_stop_signals(flag):
        _deliver(signum)
        _deliver(signum)
    assert flag.warm.is_set() and not flag.cold.is_set()


def test_sighup_then_sigterm_is_still_warm_then_cold() -> None:
    flag = StopFlag()
    with handle_stop_signals(flag):
        _deliver(signal.SIGHUP)
        assert flag.warm.is_set() and not flag.cold.is_set()
        _deliver(signal.SIGTERM)
        assert not flag.cold.is_set(), "the first SIGTERM after a SIGHUP is the first stop"
        _deliver(signal.SIGTERM)
        assert flag.cold.is_set()


def test_the_previous_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGHUP)
    with handle_stop_signals(StopFlag()):
        assert signal.getsignal(signal.SIGHUP) is not before
    assert signal.getsignal(signal.SIGHUP) is before


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path)


@pytest.fixture
def store(project: Path) -> Iterator[Adapter]:
    adapter = from_url(f"sqlite:///{project / 'jobs.db'}")
    yield adapter
    adapter.close()


def test_sighup_lets_the_running_job_finish_and_gives_the_rest_back(
    project: Path, store: Adapter
) -> None:
    [running] = enqueue(store, "Sleep", [1.0])
    waiting = enqueue(store, "Record", ["later"], n=2)
    worker = Process(project, "work", "--batch-size", "3")
    try:
        wait_until(lambda: any(line.startswith("start") for line in ledger(project)))
        worker.signal(signal.SIGHUP)
        assert worker.wait() == 0, worker.output()
    finally:
        worker.kill()
    assert [line.split()[0] for line in ledger(project)] == ["start", "done"]
    assert store.get(running) is None, "the running job finished and was recorded"
    for job_id in waiting:
        job = store.get(job_id)
        assert job is not None and job.state is JobState.READY and job.attempts == 0
