"""``queuebox start / stop / restart / status`` as a user runs them: real commands, real
processes, on SQLite and on Redis.

Each test works in its own project folder; every process it starts has that folder in its
command line (``--run-dir`` / ``--child-run-dir``), which is how the cleanup finds and kills
whatever a failing test leaves behind.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from queuebox import from_url
from queuebox.backends.base import Adapter, NewJob

JOBS_MODULE = textwrap.dedent(
    """
    import os
    import signal
    import time
    from queuebox import Job

    def note(*words):
        fd = os.open("ledger.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, (" ".join(map(str, words)) + "\\n").encode())
        os.close(fd)

    class Record(Job):
        def perform(self):
            note("ran", self.record.id, self.record.queue, os.getpid())

    class SlowFirstTime(Job):
        def perform(self, seconds):
            note("start", self.record.id, os.getpid(), self.record.attempts)
            if self.record.attempts == 1:
                time.sleep(seconds)
            note("done", self.record.id, os.getpid(), self.record.attempts)

    class Stubborn(Job):
        def perform(self, seconds):
            for signum in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
                signal.signal(signum, signal.SIG_IGN)  # deaf to warm and cold stops
            note("start", self.record.id, os.getpid())
            time.sleep(seconds)
    """
)


# -- fixtures -------------------------------------------------------------------------------------


def _with_prefix(url: str, prefix: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["prefix"] = prefix
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    url = _with_prefix(request.getfixturevalue("redis_url"), f"qbrun-{uuid.uuid4().hex[:12]}")
    yield url
    adapter = from_url(url)
    try:
        getattr(adapter, "purge", adapter.clear)()
    finally:
        adapter.close()


@pytest.fixture
def project(tmp_path: Path, store_url: str) -> Iterator[Path]:
    (tmp_path / "run_jobs.py").write_text(JOBS_MODULE)
    (tmp_path / "queuebox.toml").write_text(
        f'url = "{store_url}"\napp = ["run_jobs"]\n'
        '[[workers]]\nqueue = "*"\nsleep_delay = 0.2\nlease = 2\n'
    )
    try:
        yield tmp_path
    finally:
        _kill_everything_under(tmp_path)


@pytest.fixture
def store(project: Path, store_url: str) -> Iterator[Adapter]:
    adapter = from_url(store_url)
    yield adapter
    adapter.close()


def _kill_everything_under(folder: Path) -> None:
    """SIGKILL what a failed test left: every process whose command line names ``folder``,
    and the pids its run folder lists (a process title may have replaced the command line)."""
    run = folder / ".queuebox"
    pids: list[object] = []
    with contextlib.suppress(OSError, ValueError):
        pids.append(int((run / "supervisor.pid").read_text().splitlines()[0]))
    with contextlib.suppress(OSError, ValueError):
        pids += [w["pid"] for w in json.loads((run / "supervisor.json").read_text())["workers"]]
    for pid in pids:
        with contextlib.suppress(OSError):
            if isinstance(pid, int) and comm(pid).startswith("qb "):
                os.kill(pid, signal.SIGKILL)
    marker = str(folder).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)


# -- helpers --------------------------------------------------------------------------------------


def queuebox(project: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEBOX_")}
    return subprocess.run(
        [sys.executable, "-m", "queuebox", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def enqueue(
    store: Adapter, name: str, args: list[object], queue: str = "default", n: int = 1
) -> list[str]:
    handler = json.dumps({"name": name, "args": args, "kwargs": {}})
    jobs = [NewJob(name=name, handler=handler, queue=queue, priority=50) for _ in range(n)]
    return [record.id for record in store.schedule(jobs)]


def wait_until(condition: Callable[[], object], timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def ledger(project: Path) -> list[list[str]]:
    path = project / "ledger.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def state(project: Path) -> dict[str, Any]:
    data = json.loads((project / ".queuebox" / "supervisor.json").read_text())
    assert isinstance(data, dict)
    return data


def worker_pids(project: Path) -> dict[str, int]:
    return {w["label"]: w["pid"] for w in state(project)["workers"]}


def supervisor_pid(project: Path) -> int:
    """Line 1 of the pid file (line 2 holds the supervisor's start identity)."""
    return int((project / ".queuebox" / "supervisor.pid").read_text().splitlines()[0])


def log(project: Path) -> str:
    return (project / ".queuebox" / "queuebox.log").read_text()


def running(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def assert_all_gone(project: Path, supervisor: int, workers: list[int]) -> None:
    wait_until(lambda: not running(supervisor), timeout=10, what="the supervisor to exit")
    for pid in workers:
        # The supervisor reaps its workers before it exits: not even a zombie is left.
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} is left behind"
    assert not (project / ".queuebox" / "supervisor.pid").exists()
    assert not (project / ".queuebox" / "supervisor.json").exists()
    assert list((project / ".queuebox" / "workers").iterdir()) == []


# -- tests ----------------------------------------------------------------------------------------


def test_start_runs_each_group_on_its_queues_then_stop_leaves_nothing(
    project: Path, store: Adapter
) -> None:
    started = queuebox(project, "start", "-n", "default:2,email:1")
    assert started.returncode == 0, started.stderr + log(project)
    assert "3 worker(s)" in started.stdout
    pids = worker_pids(project)
    supervisor = supervisor_pid(project)
    assert sorted(pids) == ["default#1", "default#2", "email#1"]
    assert all(running(pid) for pid in [supervisor, *pids.values()])
    assert comm(supervisor) == "qb supervisor"
    assert {label: comm(pid) for label, pid in pids.items()} == {
        label: f"qb {label}" for label in pids
    }

    enqueue(store, "Record", [], queue="default", n=12)
    enqueue(store, "Record", [], queue="email", n=6)
    enqueue(store, "Record", [], queue="reports", n=3)
    wait_until(lambda: len(ledger(project)) >= 18, what="18 jobs")
    label_of = {pid: label for label, pid in pids.items()}
    queues_by_label = collections.defaultdict(set)
    for _, _, queue, pid in ledger(project):
        queues_by_label[label_of[int(pid)]].add(queue)
    assert queues_by_label["email#1"] == {"email"}
    assert queues_by_label["default#1"] | queues_by_label["default#2"] == {"default"}

    def all_idle() -> bool:
        lines = queuebox(project, "status").stdout.splitlines()
        assert f"supervisor: pid {supervisor}, running" in "\n".join(lines)
        return all(
            any(line.split()[:2] == [label, str(pid)] and line.endswith("idle") for line in lines)
            for label, pid in pids.items()
        )

    wait_until(all_idle, what="status to list every worker as idle")

    report = json.loads(queuebox(project, "status", "--json").stdout)["processes"]
    assert report["supervisor"]["pid"] == supervisor and report["supervisor"]["running"]
    assert {w["label"]: w["pid"] for w in report["workers"]} == pids

    stopped = queuebox(project, "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert f"stopping queuebox (supervisor pid {supervisor}, 3 worker(s))" in stopped.stdout
    assert "stopped in" in stopped.stdout
    assert_all_gone(project, supervisor, list(pids.values()))
    assert [(c.queue, c.ready, c.total) for c in store.counts()] == [("reports", 3, 3)]
    again = queuebox(project, "stop")
    assert again.returncode == 0 and "queuebox is not running" in again.stdout


def test_a_killed_worker_is_replaced_and_its_job_completes(project: Path, store: Adapter) -> None:
    started = queuebox(project, "start", "-n", "1")
    assert started.returncode == 0, started.stderr + log(project)
    [first] = worker_pids(project).values()
    [job_id] = enqueue(store, "SlowFirstTime", [60])
    wait_until(
        lambda: (
            f"running SlowFirstTime id={job_id} (default)" in queuebox(project, "status").stdout
        ),
        what="status to show the job",
    )

    os.kill(first, signal.SIGKILL)
    wait_until(lambda: worker_pids(project)["*#1"] not in (first, None), what="a new worker")
    [second] = worker_pids(project).values()
    wait_until(lambda: comm(second) == "qb *#1", what="the new worker's title")
    assert f"worker *#1 (pid {first}) died: killed by SIGKILL; restarting in 1s" in log(project)
    # The lock of the killed run expires (lease 2 s) and the new worker runs it again.
    wait_until(lambda: ["done", job_id, str(second), "2"] in ledger(project), what="the rerun")
    wait_until(lambda: store.get(job_id) is None, what="the job to be deleted as done")
    [slot] = state(project)["workers"]
    assert slot["restarts"] == 1 and slot["last_exit"] == "killed by SIGKILL"

    supervisor = supervisor_pid(project)
    assert queuebox(project, "stop").returncode == 0
    assert_all_gone(project, supervisor, [second])


def test_start_twice_restart_and_a_stale_pid_file(project: Path, store: Adapter) -> None:
    assert queuebox(project, "start", "-n", "1").returncode == 0, log(project)
    supervisor, [worker] = supervisor_pid(project), worker_pids(project).values()

    twice = queuebox(project, "start", "-n", "1")
    assert twice.returncode == 1
    assert f"queuebox is already running (supervisor pid {supervisor}" in twice.stderr
    assert supervisor_pid(project) == supervisor and running(worker)

    restarted = queuebox(project, "restart", "-n", "2")
    assert restarted.returncode == 0, restarted.stderr + log(project)
    assert "stopped in" in restarted.stdout and "2 worker(s)" in restarted.stdout
    assert not running(supervisor) and not running(worker)
    supervisor, workers = supervisor_pid(project), list(worker_pids(project).values())
    assert len(workers) == 2 and all(running(pid) for pid in workers)

    # A supervisor killed outright leaves its pid file behind; its workers notice and stop.
    os.kill(supervisor, signal.SIGKILL)
    wait_until(lambda: not any(running(pid) for pid in workers), what="orphaned workers to stop")
    status = queuebox(project, "status")
    assert "supervisor: not running (stale pid file" in status.stdout, status.stdout
    started = queuebox(project, "start", "-n", "1")
    assert started.returncode == 0, started.stderr + log(project)
    assert f"replaced a stale pid file (pid {supervisor} was gone)" in started.stdout
    new_supervisor = supervisor_pid(project)
    enqueue(store, "Record", [])
    wait_until(lambda: ledger(project), what="the new worker to run a job")
    assert queuebox(project, "stop").returncode == 0
    wait_until(lambda: not running(new_supervisor), timeout=10, what="the supervisor to exit")


def test_max_jobs_recycles_workers(project: Path, store: Adapter) -> None:
    started = queuebox(project, "start", "-n", "1", "--max-jobs", "2")
    assert started.returncode == 0, started.stderr + log(project)
    ids = enqueue(store, "Record", [], n=5)
    wait_until(lambda: len(ledger(project)) >= 5, what="5 jobs")
    assert sorted(line[1] for line in ledger(project)) == sorted(ids)
    pids = [line[3] for line in ledger(project)]
    assert len(set(pids)) == 3
    assert [pids.count(pid) for pid in dict.fromkeys(pids)] == [2, 2, 1]
    assert "retiring: ran 2 jobs (--max-jobs 2)" in log(project)
    assert "retired: ran 2 jobs (--max-jobs 2); starting a fresh one" in log(project)
    assert "died" not in log(project)
    supervisor = supervisor_pid(project)
    assert queuebox(project, "stop").returncode == 0
    assert_all_gone(project, supervisor, [int(pid) for pid in set(pids)])
    assert store.counts() == []


def test_stop_escalates_to_sigkill_and_the_job_is_kept(project: Path, store: Adapter) -> None:
    assert queuebox(project, "start", "-n", "1").returncode == 0, log(project)
    supervisor, [worker] = supervisor_pid(project), worker_pids(project).values()
    [job_id] = enqueue(store, "Stubborn", [60])
    wait_until(lambda: ledger(project), what="the job to start")
    began = time.monotonic()
    stopped = queuebox(project, "stop", "--timeout", "1")
    assert stopped.returncode == 0, stopped.stderr
    assert time.monotonic() - began < 10
    assert "still running after 1s: cold stop" in stopped.stdout
    assert f"killed pid(s) {supervisor}, {worker} with SIGKILL" in stopped.stdout
    wait_until(lambda: not running(supervisor) and not running(worker), what="both gone")
    assert not (project / ".queuebox" / "supervisor.pid").exists()
    job = store.get(job_id)
    assert job is not None, "the job was lost"


def test_start_refuses_an_app_module_it_cannot_import(tmp_path: Path) -> None:
    (tmp_path / "queuebox.toml").write_text(
        f'url = "sqlite:///{tmp_path / "jobs.db"}"\napp = ["no_such_module"]\n'
    )
    result = queuebox(tmp_path, "start", "-n", "2")
    assert result.returncode == 1
    assert "cannot import the app module 'no_such_module'" in result.stderr
    assert not (tmp_path / ".queuebox").exists(), "nothing was launched"


def test_start_fails_fast_with_the_log_when_workers_cannot_come_up(tmp_path: Path) -> None:
    # The app imports in `start` itself, and breaks in the worker processes only.
    (tmp_path / "half_app.py").write_text(
        "import sys\n"
        "if '--child-settings' in sys.argv:\n"
        "    raise ImportError('this module cannot be imported in a worker')\n"
    )
    (tmp_path / "queuebox.toml").write_text(
        f'url = "sqlite:///{tmp_path / "jobs.db"}"\napp = ["half_app"]\n'
    )
    try:
        began = time.monotonic()
        result = queuebox(tmp_path, "start", "-n", "2")
        assert result.returncode == 1
        assert time.monotonic() - began < 15
        assert "queuebox did not start: worker *#" in result.stderr
        assert "died during start-up: exit code 1" in result.stderr
        assert "cannot import the app module 'half_app'" in result.stderr
        assert not (tmp_path / ".queuebox" / "supervisor.pid").exists()
    finally:
        _kill_everything_under(tmp_path)


def test_a_stop_while_the_workers_import_the_app_stops_cleanly(tmp_path: Path) -> None:
    """`queuebox stop` while the workers still import a slow app: the supervisor stops them
    (warm, exit 0), and `start` says it was stopped, not that it failed for no reason."""
    (tmp_path / "slow_app.py").write_text(
        "import sys, time\n"
        "if '--child-settings' in sys.argv:\n"
        "    time.sleep(4)  # a worker importing a large application\n"
    )
    (tmp_path / "queuebox.toml").write_text(
        f'url = "sqlite:///{tmp_path / "jobs.db"}"\napp = ["slow_app"]\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEBOX_")}
    starting = subprocess.Popen(
        [sys.executable, "-m", "queuebox", "start"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pid_file = tmp_path / ".queuebox" / "supervisor.pid"
        wait_until(pid_file.exists, what="the supervisor's pid file")
        stopped = queuebox(tmp_path, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert "stopped in" in stopped.stdout
        _, err = starting.communicate(timeout=60)
        assert starting.returncode == 1
        assert "queuebox did not start: it was stopped before its workers were up" in err
        assert "worker *#1" in err and "stopped: exit code 0" in err, err
        assert not pid_file.exists()
    finally:
        if starting.poll() is None:
            starting.kill()
        _kill_everything_under(tmp_path)


def test_config_groups_on_one_queue_each_get_their_own_label(project: Path, store: Adapter) -> None:
    (project / "queuebox.toml").write_text(
        (project / "queuebox.toml").read_text()
        + '[[workers]]\nqueue = "email"\ncount = 2\nsleep_delay = 0.2\n'
        + '[[workers]]\nqueue = "*"\nbatch_size = 5\nsleep_delay = 0.2\nlease = 2\n'
    )
    started = queuebox(project, "start")
    assert started.returncode == 0, started.stderr + log(project)
    pids = worker_pids(project)
    assert sorted(pids) == ["*#1", "*#2", "email#1", "email#2"]
    assert len(set(pids.values())) == 4
    supervisor = supervisor_pid(project)
    assert queuebox(project, "stop").returncode == 0
    assert_all_gone(project, supervisor, list(pids.values()))


def test_the_log_file_is_readable_by_its_owner_only(project: Path, store: Adapter) -> None:
    custom = project / "logs" / "custom.log"
    started = queuebox(project, "start", "-n", "1", "--log-file", str(custom))
    assert started.returncode == 0, started.stderr
    supervisor = supervisor_pid(project)
    assert custom.stat().st_mode & 0o777 == 0o600
    assert queuebox(project, "stop").returncode == 0
    wait_until(lambda: not running(supervisor), timeout=10, what="the supervisor to exit")
    foreground_log = project / "foreground.log"
    code = "import sys; from pathlib import Path; from queuebox.runner.supervisor import "
    code += "redirect_output; redirect_output(Path(sys.argv[1])); print('x')"
    subprocess.run([sys.executable, "-c", code, str(foreground_log)], check=True)
    assert foreground_log.read_text() == "x\n"
    assert foreground_log.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "url", ["postgresql://qb:hunter2@127.0.0.1:1/none", "redis://:hunter2@127.0.0.1:1/0"]
)
def test_start_refuses_an_unreachable_store(tmp_path: Path, url: str) -> None:
    (tmp_path / "run_jobs.py").write_text(JOBS_MODULE)
    (tmp_path / "queuebox.toml").write_text(f'url = "{url}"\napp = ["run_jobs"]\n')
    try:
        began = time.monotonic()
        result = queuebox(tmp_path, "start", "-n", "1", "--wait", "10")
        assert result.returncode == 1, result.stdout
        assert time.monotonic() - began < 12
        assert "queuebox did not start: the store cannot be used: " in result.stderr
        assert "hunter2" not in result.stderr + result.stdout
        assert "started" not in result.stdout
        assert not (tmp_path / ".queuebox" / "supervisor.pid").exists()
        restarted = queuebox(tmp_path, "restart", "-n", "1", "--wait", "10")
        assert restarted.returncode == 1 and "queuebox was not restarted" in restarted.stderr
    finally:
        _kill_everything_under(tmp_path)


def test_stop_leaves_a_process_that_reused_the_pid_alone(tmp_path: Path) -> None:
    """``docker start queuebox-web`` once got SIGTERM then SIGKILL from a stale pid file."""
    lookalike = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "start", "queuebox-web"]
    )
    try:
        run = tmp_path / ".queuebox"
        run.mkdir()
        (run / "supervisor.pid").write_text(f"{lookalike.pid}\n")
        (run / "supervisor.json").write_text(json.dumps({"workers": [{"pid": lookalike.pid}]}))
        status = queuebox(tmp_path, "status")
        assert f"supervisor: not running (stale pid file {run / 'supervisor.pid'}" in status.stdout
        stopped = queuebox(tmp_path, "stop", "--timeout", "0.5")
        assert stopped.returncode == 0, stopped.stderr
        assert f"pid {lookalike.pid} is another process now" in stopped.stdout
        assert "it was not signalled" in stopped.stdout
        time.sleep(0.5)
        assert lookalike.poll() is None, "an unrelated process was signalled"
        assert not (run / "supervisor.pid").exists()
    finally:
        lookalike.kill()
        lookalike.wait()
