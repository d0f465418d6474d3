"""The command line, in-process with click's runner, on a SQLite file."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from queuebox import JobState, from_url
from queuebox.backends.base import Adapter
from queuebox.cli import cli

JOBS_MODULE = textwrap.dedent(
    """
    from pathlib import Path
    from queuebox import Job

    class Append(Job):
        def perform(self, line):
            with Path("ran.txt").open("a") as out:
                out.write(f"{line}\\n")

    class Explode(Job):
        def perform(self):
            raise RuntimeError("kaboom")
    """
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with a jobs module and a queuebox.toml that names it."""
    (tmp_path / "cli_jobs.py").write_text(JOBS_MODULE)
    (tmp_path / "queuebox.toml").write_text('url = "sqlite:///jobs.db"\napp = ["cli_jobs"]\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("cli_jobs", None)
    return tmp_path


@pytest.fixture
def store(project: Path) -> Iterator[Adapter]:
    adapter = from_url(f"sqlite:///{project / 'jobs.db'}")
    yield adapter
    adapter.close()


def schedule(project: Path, *calls: tuple[str, list[object], str]) -> None:
    """Schedule through the public API, in this process, as an application would."""
    import importlib

    import queuebox

    jobs = importlib.import_module("cli_jobs")
    queuebox.configure(url=f"sqlite:///{project / 'jobs.db'}")
    for name, args, queue in calls:
        getattr(jobs, name).set(queue=queue).perform_later(*args)
    queuebox.config.reset()


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
    return result.exit_code, result.output


def test_workoff_runs_due_jobs_and_exits_zero(project: Path, store: Adapter) -> None:
    schedule(project, ("Append", ["one"], "default"), ("Append", ["two"], "email"))
    code, output = run("workoff")
    assert code == 0, output
    assert "workoff: 2 succeeded, 0 retried, 0 failed, 0 still scheduled" in output
    assert sorted((project / "ran.txt").read_text().split()) == ["one", "two"]
    assert store.counts() == []


def test_workoff_exits_non_zero_when_a_job_raises(project: Path, store: Adapter) -> None:
    schedule(project, ("Explode", [], "default"), ("Append", ["fine"], "default"))
    code, output = run("workoff")
    assert code == 1
    assert "1 succeeded, 1 retried, 0 failed, 1 still scheduled" in output
    assert [c.scheduled for c in store.counts()] == [1]


def test_workoff_reports_failed_job_ids(project: Path, store: Adapter) -> None:
    schedule(project, ("Explode", [], "default"))
    [job] = store.list_jobs()
    code, output = run("workoff", "--max-attempts", "1")
    assert code == 1
    assert f"failed job ids: {job.id}" in output
    failed = store.get(job.id)
    assert failed is not None and failed.state is JobState.FAILED


def test_workoff_only_given_queues(project: Path, store: Adapter) -> None:
    schedule(project, ("Append", ["a"], "a"), ("Append", ["b"], "b"))
    code, _ = run("workoff", "-q", "a")
    assert code == 0
    assert (project / "ran.txt").read_text().split() == ["a"]
    assert [c.queue for c in store.counts()] == ["b"]


def test_workoff_with_a_missing_app_module(project: Path) -> None:
    code, output = run("--app", "no_such_module", "workoff")
    assert code == 1
    assert "cannot import the app module 'no_such_module'" in output


def test_status_table_and_json(project: Path, store: Adapter) -> None:
    schedule(project, ("Append", ["x"], "email"), ("Append", ["y"], "email"))
    code, output = run("status")
    assert code == 0
    assert "store: sqlite:///jobs.db" in output
    assert output.splitlines()[1].split() == [
        "queue",
        "scheduled",
        "ready",
        "running",
        "failed",
        "completed",
        "total",
    ]
    assert output.splitlines()[2].split() == ["email", "0", "2", "0", "0", "0", "2"]
    code, output = run("status", "--json")
    data = json.loads(output)
    assert data["queues"] == [
        {
            "queue": "email",
            "scheduled": 0,
            "ready": 2,
            "running": 0,
            "failed": 0,
            "completed": 0,
            "total": 2,
        }
    ]


def test_status_of_an_empty_store(project: Path) -> None:
    assert run("status") == (0, "store: sqlite:///jobs.db\nno jobs\n")


def test_clear_asks_on_a_terminal(
    project: Path, store: Adapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule(project, ("Append", ["x"], "a"), ("Append", ["y"], "b"))
    monkeypatch.setattr("queuebox.cli._stdin_is_terminal", lambda: True)
    code, output = run("clear", stdin="n\n")
    assert code == 1 and "Delete 2 job(s) in every queue" in output
    assert len(store.list_jobs()) == 2
    code, output = run("clear", "-q", "a", stdin="y\n")
    assert code == 0 and "deleted 1 job(s) in queue(s) a" in output
    code, output = run("clear", "--yes")
    assert code == 0 and "deleted 1 job(s)" in output
    assert store.counts() == []


def test_jobs_retry_and_delete(project: Path, store: Adapter) -> None:
    schedule(project, ("Explode", [], "default"), ("Append", ["z"], "default"))
    run("workoff")
    code, output = run("jobs", "--state", "scheduled")
    assert code == 0 and "Explode" in output and "RuntimeError: kaboom" in output
    [failing] = store.list_jobs(states=[JobState.SCHEDULED])
    code, output = run("jobs", "--json")
    assert json.loads(output.splitlines()[0])["id"] == failing.id
    assert run("retry", failing.id) == (0, f"{failing.id}: queued to run now\n")
    code, output = run("retry", "424242")
    assert code == 1 and "not found" in output
    assert run("delete", failing.id) == (0, f"{failing.id}: deleted\n")
    assert store.counts() == []


def test_bad_options_get_clear_errors(project: Path) -> None:
    code, output = run("work", "-n", "email:zero")
    assert code == 1 and "worker count 'zero'" in output
    code, output = run("work", "-q", "bad queue")
    assert code == 1 and "queue name 'bad queue' is not valid" in output
    code, output = run("--url", "mysql://x", "status")
    assert code == 1 and "unknown store URL scheme 'mysql'" in output
    code, output = run("workoff", "--batch-size", "0")
    assert code == 2 and "--batch-size" in output


def test_migrate(project: Path) -> None:
    code, output = run("migrate")
    assert code == 0 and "schema ready in sqlite:///jobs.db" in output
    assert (project / "jobs.db").exists()


def test_status_shows_recurring_jobs(project: Path, store: Adapter) -> None:
    (project / "cli_cron.py").write_text(
        "from queuebox import Job\n\n"
        "class Nightly(Job):\n"
        "    cron = '0 3 * * *'\n"
        "    timezone = 'Europe/Paris'\n\n"
        "    def perform(self):\n"
        "        pass\n"
    )
    sys.modules.pop("cli_cron", None)
    code, output = run("--app", "cli_cron", "status")
    assert code == 0, output
    assert "recurring jobs:" in output
    assert "Nightly (default, 0 3 * * * (Europe/Paris)): last tick never, next run" in output
    code, output = run("--app", "cli_cron", "status", "--json")
    [row] = json.loads(output)["recurring"]
    assert row["name"] == "Nightly" and row["last_tick"] is None
    assert row["next_run"].endswith(("02:00:00+00:00", "01:00:00+00:00"))


def _queuebox_level() -> str:
    import logging

    return logging.getLevelName(logging.getLogger("queuebox").level)


@pytest.mark.parametrize(
    ("args", "env", "level"),
    [
        ((), {}, "INFO"),
        (("--log-level", "WARNING"), {}, "WARNING"),
        (("--log-level", "error"), {}, "ERROR"),
        ((), {"QUEUEBOX_LOG_LEVEL": "warning"}, "WARNING"),
        (("--log-level", "INFO"), {"QUEUEBOX_LOG_LEVEL": "ERROR"}, "INFO"),
        (("-v",), {}, "DEBUG"),
        (("-v", "--log-level", "WARNING"), {}, "DEBUG"),
        (("--verbose",), {"QUEUEBOX_LOG_LEVEL": "ERROR"}, "DEBUG"),
    ],
)
def test_log_level_option_and_envvar(
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    env: dict[str, str],
    level: str,
) -> None:
    monkeypatch.delenv("QUEUEBOX_LOG_LEVEL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, output = run(*args, "status")
    assert code == 0, output
    assert _queuebox_level() == level


def test_bad_log_level_is_refused(project: Path) -> None:
    code, output = run("--log-level", "LOUD", "status")
    assert code == 2 and "--log-level" in output and "LOUD" in output


def test_quiet_log_level_silences_per_job_lines(project: Path, store: Adapter) -> None:
    schedule(project, ("Append", ["a"], "default"))
    code, output = run("--log-level", "INFO", "workoff")
    assert code == 0 and "started Append" in output and "succeeded Append" in output
    schedule(project, ("Append", ["b"], "default"))
    code, output = run("--log-level", "WARNING", "workoff")
    assert code == 0 and "started Append" not in output and "succeeded Append" not in output
    assert (project / "ran.txt").read_text() == "a\nb\n"


def test_worker_children_get_the_log_level(project: Path) -> None:
    from queuebox.runner.pool import WorkerSlot, child_command
    from queuebox.runner.settings import WorkerSettings

    slot = WorkerSlot(settings=WorkerSettings(), index=1)
    for option, level in (("WARNING", "WARNING"), ("ERROR", "ERROR"), ("DEBUG", "DEBUG")):
        assert run("--log-level", option, "status")[0] == 0
        command = child_command(slot, url=None, app=("cli_jobs",))
        assert command[command.index("--log-level") + 1] == level
        assert command.index("--log-level") < command.index("work")
    assert run("-v", "status")[0] == 0
    command = child_command(slot, url=None, app=(), global_args=["--verbose"])
    assert command[command.index("--log-level") + 1] == "DEBUG" and "--verbose" in command
