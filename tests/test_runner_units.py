"""The runner's pieces without the command line: pid file, backoff, titles, managed workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from queuebox import Job
from queuebox.backends.base import JobState
from queuebox.backends.memory import MemoryAdapter
from queuebox.runner.control import process_report, stop_supervisor
from queuebox.runner.managed import Limits, ManagedWorker, StatusReporter, resident_memory_mb
from queuebox.runner.pidfile import (
    AlreadyRunning,
    PidFile,
    is_supervisor,
    process_alive,
    read_pid,
)
from queuebox.runner.proctitle import COMM_LIMIT, short_name
from queuebox.runner.rundir import RunDir
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import StopFlag
from queuebox.runner.supervisor import BACKOFF_MAX, describe_exit, restart_delay

ran: list[int] = []


class RunnerUnitCount(Job):
    def perform(self, n: int) -> None:
        ran.append(n)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process whose command line looks like a queuebox supervisor's."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "queuebox", "supervise"]
    )
    yield process
    process.kill()
    process.wait()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# -- pid file ------------------------------------------------------------------------------------


def test_pid_file_is_created_with_our_pid_and_removed_on_release(tmp_path: Path) -> None:
    path = tmp_path / "run" / "supervisor.pid"
    pid_file = PidFile(path)
    pid_file.acquire()
    assert read_pid(path) == os.getpid()
    assert pid_file.replaced_stale is None
    assert [p.name for p in path.parent.iterdir()] == ["supervisor.pid"]  # no temporary left
    pid_file.release()
    assert not path.exists()


def test_a_live_supervisor_refuses_a_second(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    path = tmp_path / "supervisor.pid"
    path.write_text(f"{sleeper.pid}\n")
    assert is_supervisor(sleeper.pid)
    with pytest.raises(AlreadyRunning, match=f"already running \\(supervisor pid {sleeper.pid}"):
        PidFile(path).acquire()
    PidFile(path).release()  # not ours: left alone
    assert read_pid(path) == sleeper.pid


@pytest.mark.parametrize("content", ["dead", "not queuebox", "garbage", "empty"])
def test_a_stale_pid_file_is_replaced(tmp_path: Path, content: str) -> None:
    path = tmp_path / "supervisor.pid"
    other = subprocess.Popen(["sleep", "30"])
    try:
        text = {
            "dead": str(_dead_pid()),
            "not queuebox": str(other.pid),  # alive, but a reused pid
            "garbage": "hello",
            "empty": "",
        }[content]
        path.write_text(text)
        pid_file = PidFile(path)
        pid_file.acquire()
        assert read_pid(path) == os.getpid()
        assert pid_file.replaced_stale == (int(text) if text.isdigit() else None)
    finally:
        other.kill()
        other.wait()


def test_process_alive_does_not_count_a_zombie() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = threading.Event()
    while Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        deadline.wait(0.01)
    assert not process_alive(process.pid)
    process.wait()
    assert not process_alive(process.pid)
    assert process_alive(os.getpid())


# -- supervisor policy ----------------------------------------------------------------------------


def test_restart_backoff_doubles_up_to_a_minute() -> None:
    assert [restart_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert BACKOFF_MAX == 60


def test_exits_are_described_for_the_log() -> None:
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert describe_exit(3) == "exit code 3"


def test_short_names_fit_the_kernel_limit_and_keep_the_index() -> None:
    assert short_name("supervisor") == "qb supervisor"
    assert short_name("email#1") == "qb email#1"
    long = short_name("default,email,reports#12")
    assert (
        len(long.encode()) <= COMM_LIMIT and long.startswith("qb default") and long.endswith("~#12")
    )


def test_the_title_shows_in_proc_comm() -> None:
    code = (
        "from queuebox.runner.proctitle import set_process_title; import pathlib;"
        "set_process_title('email#2'); print(pathlib.Path('/proc/self/comm').read_text())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "qb email#2"


# -- managed worker -------------------------------------------------------------------------------


def _run_in_thread(worker: ManagedWorker) -> None:
    thread = threading.Thread(target=worker.run)
    thread.start()
    thread.join(timeout=10)
    if thread.is_alive():
        worker.stop.stop_now()
        thread.join()
        pytest.fail("the worker did not retire")


def test_max_jobs_retires_the_worker_and_gives_back_the_rest(
    memory_store: MemoryAdapter, tmp_path: Path
) -> None:
    ran.clear()
    for n in range(4):
        RunnerUnitCount.perform_later(n)
    status_file = tmp_path / "worker.json"
    reporter = StatusReporter(status_file, label="default#1", queues=None, supervisor=None)
    worker = ManagedWorker(
        memory_store,
        WorkerSettings(batch_size=3, sleep_delay=0.1),
        limits=Limits(max_jobs=2),
        reporter=reporter,
        stop=StopFlag(),
    )
    _run_in_thread(worker)
    assert ran == [0, 1]
    assert worker.retired == "ran 2 jobs (--max-jobs 2)"
    left = memory_store.list_jobs()
    assert [(job.state, job.attempts) for job in left] == [(JobState.READY, 0)] * 2
    status = json.loads(status_file.read_text())
    assert status["jobs_done"] == 2 and status["job"] is None
    assert status["exit_reason"] == "ran 2 jobs (--max-jobs 2)"
    assert status["pid"] == os.getpid() and status["label"] == "default#1"


def test_a_memory_ceiling_retires_the_worker_between_jobs(memory_store: MemoryAdapter) -> None:
    ran.clear()
    RunnerUnitCount.perform_later(1)
    RunnerUnitCount.perform_later(2)
    assert resident_memory_mb() > 1
    worker = ManagedWorker(
        memory_store,
        WorkerSettings(sleep_delay=0.1),
        limits=Limits(max_memory_mb=1),
        reporter=None,
        stop=StopFlag(),
    )
    _run_in_thread(worker)
    assert ran == [1]
    assert worker.retired is not None and "(--max-memory 1 MB)" in worker.retired


def test_limits_become_worker_options() -> None:
    assert Limits().child_args() == []
    assert Limits(max_jobs=5, max_memory_mb=512).child_args() == [
        "--max-jobs",
        "5",
        "--max-memory",
        "512",
    ]


# -- stop and status without a supervisor ---------------------------------------------------------


def test_stop_and_status_when_nothing_runs(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / ".queuebox")
    said: list[str] = []
    assert stop_supervisor(run_dir, timeout=1, say=said.append) is False
    assert said == [f"queuebox is not running (no pid file at {run_dir.pid_file})"]
    assert process_report(run_dir) is None

    run_dir.create()
    dead = _dead_pid()
    run_dir.pid_file.write_text(f"{dead}\n")
    assert process_report(run_dir) == {
        "pid_file": str(run_dir.pid_file),
        "supervisor": {"pid": dead, "running": False},
    }
    said.clear()
    assert stop_supervisor(run_dir, timeout=1, say=said.append) is False
    assert said == [f"queuebox is not running: pid {dead} is gone; removed the stale pid file"]
    assert not run_dir.pid_file.exists()
