"""``queuebox workoff`` as CI runs it: real processes, one summary, exit codes to trust."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from queuebox.backends.base import Adapter, NewJob
from queuebox.backends.sqlite import SQLiteAdapter

JOBS_MODULE = textwrap.dedent(
    """
    import os
    import signal
    from pathlib import Path

    import queuebox
    from queuebox import Job
    from queuebox.backends.sqlite import SQLiteAdapter
    from queuebox.errors import StorageUnavailable

    HERE = Path(__file__).parent


    def note(*words):
        fd = os.open(HERE / "ledger.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, (" ".join(map(str, words)) + "\\n").encode())
        os.close(fd)


    class FlakyStore(SQLiteAdapter):
        \"\"\"Claims work CLAIMS_THAT_WORK times, then the store is gone for good.\"\"\"

        claims = 0

        def claim(self, *args, **kwargs):
            FlakyStore.claims += 1
            if FlakyStore.claims > int(os.environ.get("CLAIMS_THAT_WORK", "1000000")):
                raise StorageUnavailable("connection reset by peer", url="flaky://db")
            return super().claim(*args, **kwargs)


    if os.environ.get("CLAIMS_THAT_WORK"):
        queuebox.configure(adapter=FlakyStore(HERE / "jobs.db"))


    class Record(Job):
        def perform(self, tag):
            note("ran", self.record.id, os.getpid(), tag)


    class Explode(Job):
        def perform(self):
            note("exploded", self.record.id, os.getpid())
            raise RuntimeError("kaboom")


    class Interrupt(Job):
        def perform(self):
            note("interrupt", self.record.id, os.getpid())
            os.kill(os.getpid(), signal.SIGINT)
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "off_jobs.py").write_text(JOBS_MODULE)
    (tmp_path / "queuebox.toml").write_text('url = "sqlite:///jobs.db"\napp = ["off_jobs"]\n')
    return tmp_path


@pytest.fixture
def store(project: Path) -> Adapter:
    adapter = SQLiteAdapter(project / "jobs.db")
    adapter.migrate()
    return adapter


def enqueue(store: Adapter, name: str, args: list[object], n: int = 1, priority: int = 50) -> None:
    handler = json.dumps({"name": name, "args": args, "kwargs": {}})
    store.schedule(
        [NewJob(name=name, handler=handler, queue="default", priority=priority) for _ in range(n)]
    )


def workoff(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEBOX_")}
    return subprocess.run(
        [sys.executable, "-m", "queuebox", "--log-level", "WARNING", "workoff", *args],
        cwd=project,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def ledger(project: Path) -> list[list[str]]:
    path = project / "ledger.txt"
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.timeout(120)
def test_several_processes_work_one_backlog_off_with_one_summary(
    project: Path, store: Adapter
) -> None:
    enqueue(store, "Record", ["x"], n=400)
    result = workoff(project, "-n", "4", "--batch-size", "5")
    assert result.returncode == 0, result.stderr
    lines = ledger(project)
    assert sorted(int(line[1]) for line in lines) == list(range(1, 401)), "ran twice or not"
    assert len({line[2] for line in lines}) >= 2, "the processes did not share the backlog"
    assert (
        "workoff: 400 succeeded, 0 failed, 0 jobs to run again (0 attempts raised); "
        "left: 0 ready, 0 scheduled"
    ) in result.stdout
    assert store.counts() == []


def test_one_summary_counts_every_process_and_a_raise_exits_1(
    project: Path, store: Adapter
) -> None:
    enqueue(store, "Explode", [], n=3)
    enqueue(store, "Record", ["x"], n=7)
    result = workoff(project, "-n", "3", "--max-attempts", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "workoff: 7 succeeded, 0 failed, 3 jobs to run again (3 attempts raised); "
        "left: 0 ready, 3 scheduled"
    ) in result.stdout


def test_giving_up_on_the_store_says_so_and_exits_3(project: Path, store: Adapter) -> None:
    enqueue(store, "Record", ["x"], n=5)
    result = workoff(project, "--give-up-after", "0.3", env={"CLAIMS_THAT_WORK": "2"})
    assert result.returncode == 3, result.stdout + result.stderr
    assert "workoff: 2 succeeded, 0 failed" in result.stdout
    assert "left: 3 ready, 0 scheduled" in result.stdout  # counts still answer
    assert (
        "workoff stopped: the store is unreachable, gave up: connection reset by peer "
        "(store: flaky://db)"
    ) in result.stderr
    assert len(ledger(project)) == 2


def test_giving_up_in_one_of_several_processes_exits_3(project: Path, store: Adapter) -> None:
    enqueue(store, "Record", ["x"], n=5)
    result = workoff(project, "-n", "2", "--give-up-after", "0.3", env={"CLAIMS_THAT_WORK": "1"})
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr.count("workoff stopped: the store is unreachable, gave up") == 2
    assert "workoff: 2 succeeded" in result.stdout and "left: 3 ready" in result.stdout


def test_an_interrupted_workoff_exits_4_and_leaves_the_rest(project: Path, store: Adapter) -> None:
    enqueue(store, "Interrupt", [], priority=1)
    enqueue(store, "Record", ["x"], n=3)
    result = workoff(project)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "workoff: 1 succeeded" in result.stdout and "left: 3 ready" in result.stdout
    assert "workoff stopped: interrupted before every due job ran" in result.stderr
    assert [line[0] for line in ledger(project)] == ["interrupt"]
