"""The runner's pieces without the command line: pid file, backoff, titles, managed workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
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
    SupervisorRecord,
    process_alive,
    process_identity,
    read_pid,
    read_supervisor,
    remove_if_stale,
    same_process,
    signal_process,
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


#: A process that holds a pid file as a supervisor does, deaf to SIGTERM (as a supervisor
#: waiting for a long job is): the pid file's path is its argument.
HOLDER = (
    "import signal, sys, time; from pathlib import Path; "
    "from queuebox.runner.pidfile import PidFile; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "PidFile(Path(sys.argv[1])).acquire(); print('ready', flush=True); time.sleep(60)"
)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def holder(path: Path, started: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True
    )
    started.append(process)
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def lookalike(started: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    """A live process whose arguments look like a supervisor's (``docker start queuebox-web``
    did, and was killed by the old check)."""
    code = "import time; time.sleep(60)"
    process = subprocess.Popen(
        [sys.executable, "-c", code, "start", "queuebox-web", "supervise"], text=True
    )
    started.append(process)
    return process


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# -- pid file ------------------------------------------------------------------------------------


def test_pid_file_holds_our_pid_and_start_and_is_removed_on_release(tmp_path: Path) -> None:
    path = tmp_path / "run" / "supervisor.pid"
    pid_file = PidFile(path)
    pid_file.acquire()
    identity = process_identity(os.getpid())
    assert identity is not None and identity.startswith(f"{os.getpid()}:")
    assert path.read_text() == f"{os.getpid()}\nstart={identity}\n"
    assert read_pid(path) == os.getpid()
    record = read_supervisor(path)
    assert record == SupervisorRecord(os.getpid(), identity, locked=True) and record.running
    assert pid_file.replaced_stale is None
    assert [p.name for p in path.parent.iterdir()] == ["supervisor.pid"]  # no temporary left
    pid_file.release()
    assert not path.exists()


def test_process_identity_tells_processes_apart() -> None:
    dead = _dead_pid()
    assert process_identity(dead) is None and not same_process(dead, "1@x")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        theirs, ours = process_identity(other.pid), process_identity(os.getpid())
        assert theirs is not None and theirs != ours
        assert same_process(other.pid, theirs) and not same_process(other.pid, ours)
        assert not same_process(other.pid, None), "without a recorded start nothing is proven"
        assert not signal_process(other.pid, ours, signal.SIGTERM)
        assert other.poll() is None
        assert signal_process(other.pid, theirs, signal.SIGTERM)
        assert other.wait(5) == -signal.SIGTERM
    finally:
        other.kill()
        other.wait()


def test_a_live_supervisor_refuses_a_second(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    path = tmp_path / "supervisor.pid"
    live = holder(path, processes)
    record = read_supervisor(path)
    assert record is not None and record.pid == live.pid and record.running
    with pytest.raises(AlreadyRunning, match=f"already running \\(supervisor pid {live.pid}"):
        PidFile(path).acquire()
    assert not remove_if_stale(path)
    assert read_pid(path) == live.pid
    live.kill()
    live.wait()
    stale = read_supervisor(path)
    assert stale is not None and stale.locked is False and not stale.running
    assert remove_if_stale(path) and not path.exists()


@pytest.mark.parametrize("content", ["dead", "lookalike", "ours unlocked", "garbage", "empty"])
def test_a_stale_pid_file_is_replaced(
    tmp_path: Path, content: str, processes: list[subprocess.Popen[str]]
) -> None:
    path = tmp_path / "supervisor.pid"
    other = lookalike(processes)
    text = {
        "dead": f"{_dead_pid()}\n",
        "lookalike": f"{other.pid}\nstart={process_identity(other.pid)}\n",  # nobody's lock
        "ours unlocked": f"{os.getpid()}\n",  # pid 1 again, in a restarted container
        "garbage": "hello",
        "empty": "",
    }[content]
    path.write_text(text)
    pid_file = PidFile(path)
    pid_file.acquire()
    try:
        assert read_pid(path) == os.getpid()
        first = text.split("\n")[0]
        assert pid_file.replaced_stale == (int(first) if first.isdigit() else None)
        assert other.poll() is None
    finally:
        pid_file.release()


def test_stop_never_signals_a_process_that_is_not_provably_ours(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    run_dir = RunDir(tmp_path / ".queuebox")
    run_dir.create()
    victim = lookalike(processes)
    said: list[str] = []
    for text in (
        f"{victim.pid}\n",  # a stale file whose pid was reused
        f"{victim.pid}\nstart={process_identity(victim.pid)}\n",  # its start, but no lock
    ):
        run_dir.pid_file.write_text(text)
        run_dir.write_state({"pid": victim.pid, "workers": [{"pid": victim.pid}]})
        said.clear()
        assert stop_supervisor(run_dir, timeout=0.2, say=said.append) is False
        assert said == [
            f"queuebox is not running: pid {victim.pid} is another process now (the supervisor "
            "that wrote the pid file is gone: the file's lock is free); it was not signalled; "
            "removed the stale pid file"
        ]
        assert not run_dir.pid_file.exists() and run_dir.read_state() is None
        assert process_report(run_dir) is None
    # A pid file locked by a live process but naming another: the lock's owner is not the pid.
    live = holder(run_dir.pid_file, processes)
    run_dir.pid_file.write_text(f"{victim.pid}\nstart={process_identity(live.pid)}\n")
    assert stop_supervisor(run_dir, timeout=0.2, say=said.append) is False
    time.sleep(0.3)
    assert victim.poll() is None and live.poll() is None


@pytest.mark.timeout(60)
def test_sigkill_reaches_only_the_workers_the_supervisor_started(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    """A supervisor deaf to stops is killed, and so is its worker; a pid in supervisor.json
    that now belongs to another process is left alone."""
    run_dir = RunDir(tmp_path / ".queuebox")
    run_dir.create()
    supervisor = holder(run_dir.pid_file, processes)
    worker = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(15, 1); time.sleep(60)"],
        text=True,
    )
    processes.append(worker)
    reused = lookalike(processes)
    wait_for_identity = time.monotonic() + 5
    while process_identity(worker.pid) is None and time.monotonic() < wait_for_identity:
        time.sleep(0.01)
    run_dir.write_state(
        {
            "pid": supervisor.pid,
            "workers": [
                {"pid": worker.pid, "identity": process_identity(worker.pid)},
                {"pid": reused.pid, "identity": f"{reused.pid}:1@boot"},
                {"pid": reused.pid},
            ],
        }
    )
    said: list[str] = []
    assert stop_supervisor(run_dir, timeout=0.3, say=said.append) is True
    assert said[-1].startswith(f"killed pid(s) {supervisor.pid}, {worker.pid} with SIGKILL")
    assert supervisor.wait(5) == -signal.SIGKILL and worker.wait(5) == -signal.SIGKILL
    assert reused.poll() is None
    assert not run_dir.pid_file.exists()


def test_process_alive_does_not_count_a_zombie() -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = threading.Event()
    while Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        deadline.wait(0.01)
    assert not process_alive(process.pid)
    assert process_identity(process.pid) is None
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
    run_dir.pid_file.write_text("not a pid\n")
    said.clear()
    assert stop_supervisor(run_dir, timeout=1, say=said.append) is False
    assert said == [
        "queuebox is not running: the pid file names no pid; removed the stale pid file"
    ]


# -- throughput tallies -------------------------------------------------------------------------


def test_stats_fold_runs_per_minute_queue_and_name() -> None:
    from queuebox.backends.base import RUNTIME_BUCKETS
    from queuebox.runner import stats as stats_module

    clock = iter([600.0, 610.0, 659.0, 660.5])  # minutes 10, 10, 10, 11
    collector = stats_module.StatsCollector(clock=lambda: next(clock))
    collector.add_successes([("q", "A", 0.0005), ("q", "A", 0.02), ("other", "A", 0.0005)])
    collector.add("q", "A", "retried", 3.0)
    collector.add_successes([])  # nothing to tally, and no clock read
    collector.add("q", "A", "failed", 1000.0)  # past the last bound: the last bucket
    collector.add("q", "B", "cancelled", 0.0005)
    tallies = collector.take()
    assert collector.take() == []
    by_key = {(t.minute.minute, t.queue, t.name): t for t in tallies}
    assert sorted(by_key) == [(10, "other", "A"), (10, "q", "A"), (11, "q", "B")]
    first = by_key[10, "q", "A"]
    assert (first.succeeded, first.retried, first.failed, first.cancelled) == (2, 1, 1, 0)
    assert first.runtime_sum == pytest.approx(0.0005 + 0.02 + 3.0 + 1000.0)
    expected = [0] * (len(RUNTIME_BUCKETS) + 1)
    for elapsed in (0.0005, 0.02, 3.0, 1000.0):
        expected[next((i for i, b in enumerate(RUNTIME_BUCKETS) if elapsed <= b), -1)] += 1
    assert list(first.runtime_counts) == expected
    assert sum(by_key[10, "other", "A"].runtime_counts) == 1
    last = by_key[11, "q", "B"]
    assert (last.succeeded, last.cancelled, last.minute.minute) == (0, 1, 11)
