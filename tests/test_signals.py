"""Stop signals: which are warm, which cold, and that a closed terminal (SIGHUP) stops a
worker gracefully instead of killing it with its jobs locked."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Process, enqueue, ledger, wait_until, write_project

from queuebox import JobState, from_url
from queuebox.backends.base import Adapter
from queuebox.runner.signals import PASSED_ON_SIGNALS, StopFlag, handle_stop_signals


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


def test_a_stop_sent_before_the_handlers_waits_for_them() -> None:
    # A pool starts its workers with the passed-on signals blocked: one sent while the
    # worker still imports its app is delivered when the handlers are in place.
    flag = StopFlag()
    held = signal.pthread_sigmask(signal.SIG_BLOCK, PASSED_ON_SIGNALS)
    try:
        # To this thread: sent to the process, the signal may go to another thread of the
        # test run that does not block it, and kill the run (a worker's threads all inherit
        # its main thread's mask).
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
        with handle_stop_signals(flag):
            time.sleep(0.05)
            assert flag.warm.is_set() and not flag.cold.is_set()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    assert signal.SIGUSR1 not in signal.sigpending()


SLOW_IMPORT = """
import os, time
from proc_jobs import note
note(f"importing {os.getpid()}")
time.sleep(1.5)  # an app whose import takes a while (framework setup, large modules)
"""


def test_a_stop_while_the_workers_start_is_a_clean_stop(tmp_path: Path) -> None:
    # SIGUSR1's default action is to terminate: passed on to a worker still importing the
    # app, it killed the worker, which `work -n` reported as a worker that died (exit 1).
    project = write_project(tmp_path)
    (project / "slow_app.py").write_text(SLOW_IMPORT)
    pool = Process(project, "--app", "proc_jobs", "--app", "slow_app", "work", "-n", "2")
    try:
        wait_until(
            lambda: sum(line.startswith("importing") for line in ledger(project)) == 3,
            timeout=30,
            what="the pool and both workers to import the app",
        )
        pool.signal(signal.SIGTERM)
        assert pool.wait(timeout=30) == 0, pool.output()
        assert "ended with" not in pool.output()
    finally:
        pool.kill()


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
