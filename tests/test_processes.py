"""Real worker processes on one SQLite file: signals, several workers, exactly-once."""

from __future__ import annotations

import collections
import functools
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from queuebox import JobState, from_url
from queuebox.backends.base import Adapter, NewJob

TICKS_MODULE = textwrap.dedent(
    """
    import os
    from queuebox import Job
    from proc_jobs import note

    class Tick(Job):
        every = 0.5

        def perform(self):
            note(f"tick {self.record.run_at.timestamp()} {os.getpid()}")
    """
)

JOBS_MODULE = textwrap.dedent(
    """
    import os
    import time
    from queuebox import Job

    def note(line):
        fd = os.open("ledger.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, (line + "\\n").encode())
        os.close(fd)

    class Record(Job):
        def perform(self, tag):
            note(f"{self.record.id} {self.record.queue} {os.getpid()} {tag}")

    class Collector(Job):
        def perform(self):
            import gc
            note(f"gc {os.getpid()} {gc.get_threshold()[0]} {gc.get_freeze_count()}")

    class Sleep(Job):
        def perform(self, seconds):
            note(f"start {self.record.id} {os.getpid()}")
            time.sleep(seconds)
            note(f"done {self.record.id} {os.getpid()}")
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "proc_jobs.py").write_text(JOBS_MODULE)
    (tmp_path / "proc_ticks.py").write_text(TICKS_MODULE)
    (tmp_path / "queuebox.toml").write_text(
        'url = "sqlite:///jobs.db"\napp = ["proc_jobs"]\n'
        '[[workers]]\nqueue = "*"\nsleep_delay = 0.2\n'
    )
    return tmp_path


@pytest.fixture
def store(project: Path) -> Iterator[Adapter]:
    adapter = from_url(f"sqlite:///{project / 'jobs.db'}")
    yield adapter
    adapter.close()


def enqueue(
    store: Adapter, name: str, args: list[object], queue: str = "default", n: int = 1
) -> list[str]:
    handler = json.dumps({"name": name, "args": args, "kwargs": {}})
    jobs = [NewJob(name=name, handler=handler, queue=queue, priority=50) for _ in range(n)]
    return [record.id for record in store.schedule(jobs)]


class Process:
    def __init__(self, project: Path, *args: str) -> None:
        self.log = project / f"worker-{time.monotonic_ns()}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEBOX_")}
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "queuebox", *args],
                cwd=project,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        return self.popen.wait(timeout)

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.kill()


def wait_until(condition: Callable[[], bool], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def ledger(project: Path) -> list[str]:
    path = project / "ledger.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_sigterm_lets_the_running_job_finish(
    project: Path, store: Adapter, processes: list[Process]
) -> None:
    [job_id] = enqueue(store, "Sleep", [1.5])
    worker = Process(project, "work")
    processes.append(worker)
    wait_until(lambda: any(line.startswith("start") for line in ledger(project)), what="start")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.output()
    assert [line.split()[0] for line in ledger(project)] == ["start", "done"]
    assert store.get(job_id) is None


def test_second_sigterm_gives_the_lock_back_for_another_worker(
    project: Path, store: Adapter, processes: list[Process]
) -> None:
    [job_id] = enqueue(store, "Sleep", [3])
    first = Process(project, "work")
    processes.append(first)
    wait_until(lambda: len(ledger(project)) == 1, what="first start")
    first.signal(signal.SIGTERM)
    time.sleep(0.3)
    first.signal(signal.SIGTERM)
    first.wait()
    job = store.get(job_id)
    assert job is not None and job.state is JobState.READY and job.attempts == 0, job
    assert "cold stop" in first.output()
    second = Process(project, "work")
    processes.append(second)
    started = time.monotonic()
    wait_until(lambda: len(ledger(project)) == 3, timeout=15, what="second run")
    assert time.monotonic() - started < 5, "the released job was not picked up promptly"
    second.signal(signal.SIGTERM)
    assert second.wait() == 0


def test_worker_groups_take_only_their_queues(
    project: Path, store: Adapter, processes: list[Process]
) -> None:
    enqueue(store, "Record", ["x"], queue="email", n=20)
    enqueue(store, "Record", ["x"], queue="default", n=20)
    enqueue(store, "Record", ["x"], queue="reports", n=5)
    pool = Process(project, "work", "-n", "default:2,email:1")
    processes.append(pool)
    wait_until(lambda: len(ledger(project)) >= 40, what="40 jobs")
    pids_by_queue: dict[str, set[str]] = collections.defaultdict(set)
    for line in ledger(project):
        _, queue, pid, _ = line.split()
        pids_by_queue[queue].add(pid)
    assert set(pids_by_queue) == {"email", "default"}
    assert len(pids_by_queue["email"]) == 1
    assert not pids_by_queue["email"] & pids_by_queue["default"]
    # A job writes its ledger line before its success is recorded: wait for the last one.
    wait_until(
        lambda: [(c.queue, c.ready, c.running) for c in store.counts()] == [("reports", 5, 0)],
        what="only the reports queue's jobs left, untouched",
    )
    pool.signal(signal.SIGINT)
    assert pool.wait() == 0, pool.output()
    for pid in set().union(*pids_by_queue.values()):
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


@pytest.mark.parametrize("args", [["work"], ["work", "-n", "default:2"]], ids=["one", "pool"])
def test_a_worker_process_runs_jobs_with_the_collector_tuned_for_it(
    project: Path, store: Adapter, processes: list[Process], args: list[str]
) -> None:
    """``queuebox work`` (one worker, and each child of a pool) freezes what it holds at
    start and raises the young generation's threshold before its first job."""
    from queuebox.cli.work import YOUNG_GENERATION

    enqueue(store, "Collector", [], n=4)
    worker = Process(project, *args)
    processes.append(worker)
    wait_until(lambda: len(ledger(project)) >= 4, what="4 jobs")
    worker.signal(signal.SIGINT)
    assert worker.wait() == 0, worker.output()
    for line in ledger(project):
        _, pid, threshold, frozen = line.split()
        assert int(threshold) == YOUNG_GENERATION, line
        assert int(frozen) > 1000, line  # the modules and the application, set apart
        assert int(pid) != os.getpid()


@pytest.mark.slow
def test_four_processes_run_2000_jobs_exactly_once(
    project: Path, store: Adapter, processes: list[Process]
) -> None:
    ids = enqueue(store, "Record", ["x"], queue="default", n=1000)
    pool = Process(project, "work", "-n", "4")
    processes.append(pool)
    # A producer enqueues the second half while the workers drain the first.
    ids += enqueue(store, "Record", ["x"], queue="default", n=1000)
    wait_until(lambda: len(ledger(project)) >= 2000, timeout=120, what="2000 jobs")
    time.sleep(0.5)
    pool.signal(signal.SIGTERM)
    assert pool.wait() == 0
    lines = ledger(project)
    ran = [line.split()[0] for line in lines]
    assert sorted(ran, key=int) == sorted(ids, key=int), "a job ran twice or not at all"
    assert len({line.split()[2] for line in lines}) >= 2, "the workers did not run concurrently"
    output = pool.output()
    assert "database is locked" not in output and "Traceback" not in output
    assert store.counts() == []


def _pool_of_two(
    project: Path, store: Adapter, processes: list[Process]
) -> tuple[Process, list[str]]:
    """``work -n 2``, once two jobs ran: the pool, and the pids of its two worker processes."""
    pool = Process(project, "work", "-n", "2")
    processes.append(pool)
    enqueue(store, "Record", ["x"], n=2)
    wait_until(lambda: len(ledger(project)) == 2, what="both jobs")
    children = subprocess.run(
        ["pgrep", "-P", str(pool.popen.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert len(children) == 2
    return pool, children


def test_children_stop_when_the_parent_dies(
    project: Path, store: Adapter, processes: list[Process]
) -> None:
    pool, children = _pool_of_two(project, store, processes)
    pool.popen.kill()
    pool.popen.wait()
    for pid in children:
        wait_until(functools.partial(_gone, int(pid)), timeout=10, what=f"child {pid} to exit")


def test_a_dead_worker_is_reported_at_once_and_the_others_go_on(
    project: Path, store: Adapter, processes: list[Process]
) -> None:
    pool, (victim, survivor) = _pool_of_two(project, store, processes)
    os.kill(int(victim), signal.SIGKILL)
    wait_until(lambda: "ended with signal 9 while the others run" in pool.output(), what="report")
    assert "queuebox start --foreground" in pool.output()
    enqueue(store, "Record", ["x"], n=3)
    wait_until(lambda: len(ledger(project)) == 5, what="the survivor to take the new jobs")
    assert {line.split()[2] for line in ledger(project)[2:]} == {survivor}
    pool.signal(signal.SIGTERM)
    assert pool.wait() == 1, "a worker died: the pool's exit code says so"


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # A zombie waiting for init to reap it counts as gone.
            return stat.read().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_recurring_ticks_run_once_across_worker_processes(
    project: Path, store: Adapter, processes: list[Process]
) -> None:
    pool = Process(project, "--app", "proc_jobs", "--app", "proc_ticks", "work", "-n", "3")
    processes.append(pool)
    wait_until(lambda: len(ledger(project)) >= 8, timeout=30, what="8 ticks")
    pool.signal(signal.SIGTERM)
    assert pool.wait() == 0, pool.output()
    ticks = [float(line.split()[1]) for line in ledger(project) if line.startswith("tick")]
    assert len(ticks) == len(set(ticks)), f"a tick ran twice: {sorted(ticks)}"
    ordered = sorted(ticks)
    gaps = {round(b - a, 1) for a, b in itertools.pairwise(ordered)}
    assert gaps == {0.5}, f"a tick was skipped: {ordered}"


def test_a_parent_warm_stop_never_escalates(
    project: Path, store: Adapter, processes: list[Process]
) -> None:
    """A service manager's SIGTERM plus the supervisor's warm stop is still a warm stop."""
    [job_id] = enqueue(store, "Sleep", [1.5])
    worker = Process(project, "work")
    processes.append(worker)
    wait_until(lambda: len(ledger(project)) == 1, what="the job to start")
    worker.signal(signal.SIGUSR1)  # the supervisor's warm stop ...
    time.sleep(0.2)
    worker.signal(signal.SIGTERM)  # ... and systemd's, to every process of the service
    assert worker.wait() == 0, worker.output()
    assert [line.split()[0] for line in ledger(project)] == ["start", "done"]
    assert store.get(job_id) is None


def test_a_parent_cold_stop_gives_the_lock_back(
    project: Path, store: Adapter, processes: list[Process]
) -> None:
    [job_id] = enqueue(store, "Sleep", [5])
    worker = Process(project, "work")
    processes.append(worker)
    wait_until(lambda: len(ledger(project)) == 1, what="the job to start")
    worker.signal(signal.SIGUSR1)
    time.sleep(0.3)
    worker.signal(signal.SIGUSR2)
    assert worker.wait() == 0, worker.output()
    job = store.get(job_id)
    assert job is not None and job.state is JobState.READY and job.attempts == 0, job
    assert [line.split()[0] for line in ledger(project)] == ["start"]


def test_work_n_children_get_the_store_through_the_environment(
    project: Path, store: Adapter, processes: list[Process]
) -> None:
    """A password in the URL must not show in ``ps``: the children's command lines hold
    neither the URL nor the app modules; their environment does."""
    url = f"sqlite:///{project / 'jobs.db'}?busy_timeout=30"
    pool = Process(project, "--url", url, "--app", "proc_jobs", "work", "-n", "2")
    processes.append(pool)
    enqueue(store, "Record", ["x"], n=2)
    wait_until(lambda: len(ledger(project)) == 2, what="both jobs")
    children = subprocess.run(
        ["pgrep", "-P", str(pool.popen.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert len(children) == 2
    for pid in children:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert not any(b"sqlite" in arg or b"proc_jobs" in arg for arg in argv), argv
        assert b"--url" not in argv and b"--app" not in argv
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"QUEUEBOX_URL={url}".encode() in environ
        assert b"QUEUEBOX_APP=proc_jobs" in environ
    pool.signal(signal.SIGTERM)
    assert pool.wait() == 0, pool.output()
