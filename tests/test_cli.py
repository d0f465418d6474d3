"""The command line, in-process with click's runner, on a SQLite file."""

from __future__ import annotations

import json
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from queuebox import JobState, from_url
from queuebox.backends.base import Adapter, CancelOutcome, NewJob
from queuebox.backends.memory import MemoryAdapter
from queuebox.backends.records import RunningJob, WorkerInfo
from queuebox.backends.sqlite import SQLiteAdapter
from queuebox.cli import cli
from queuebox.cli.common import worker_groups

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

    class Reject(Job):
        max_attempts = 1

        def perform(self, email):
            raise ValueError(f"bad email {email}")
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


def store_url(project: Path) -> str:
    """The store the project's queuebox.toml names: its relative path is anchored there."""
    return f"sqlite:///{project / 'jobs.db'}"


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)
    return result.exit_code, result.output


def test_workoff_runs_due_jobs_and_exits_zero(project: Path, store: Adapter) -> None:
    schedule(project, ("Append", ["one"], "default"), ("Append", ["two"], "email"))
    code, output = run("workoff")
    assert code == 0, output
    assert f"store: {store_url(project)}\n" in output
    assert (
        "workoff: 2 succeeded, 0 failed, 0 jobs to run again (0 attempts raised); "
        "left: 0 ready, 0 scheduled"
    ) in output
    assert sorted((project / "ran.txt").read_text().split()) == ["one", "two"]
    assert store.counts() == []


def test_workoff_exits_non_zero_when_a_job_raises(project: Path, store: Adapter) -> None:
    schedule(project, ("Explode", [], "default"), ("Append", ["fine"], "default"))
    code, output = run("workoff")
    assert code == 1
    assert (
        "1 succeeded, 0 failed, 1 job to run again (1 attempt raised); left: 0 ready, 1 sch"
        in output
    )
    assert [c.scheduled for c in store.counts()] == [1]


def test_workoff_reports_failed_job_ids(project: Path, store: Adapter) -> None:
    schedule(project, ("Explode", [], "default"))
    [job] = store.list_jobs()
    code, output = run("workoff", "--max-attempts", "1")
    assert code == 1
    assert f"failed job ids: {job.id} (see queuebox show ID" in output
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
    assert f"store: {store_url(project)}" in output
    assert output.splitlines()[1].split() == [
        "queue",
        "scheduled",
        "ready",
        "running",
        "failed",
        "completed",
        "cancelled",
        "total",
    ]
    assert output.splitlines()[2].split() == ["email", "0", "2", "0", "0", "0", "0", "2"]
    code, output = run("status", "--json")
    data = json.loads(output)
    assert data["store"] == store_url(project)
    assert data["queues"] == [
        {
            "queue": "email",
            "scheduled": 0,
            "ready": 2,
            "running": 0,
            "failed": 0,
            "completed": 0,
            "cancelled": 0,
            "total": 2,
        }
    ]


def test_cancelled_jobs_show_in_status_and_jobs(memory_store: MemoryAdapter) -> None:
    handler = '{"name": "Append", "args": ["x"], "kwargs": {}}'
    new = NewJob(name="Append", handler=handler, queue="email", priority=50)
    [_, cancelled] = memory_store.schedule([new, new])
    assert memory_store.cancel(cancelled.id) is CancelOutcome.CANCELLED
    code, output = run("status")
    assert code == 0, output
    assert output.splitlines()[2].split() == ["email", "0", "1", "0", "0", "0", "1", "2"]
    code, output = run("jobs", "--state", "cancelled")
    assert code == 0, output
    [row] = output.splitlines()[2:]
    assert row.split()[:3] == [cancelled.id, "cancelled", "email"]


HOSTILE = "x\x1b[2J\x1b]0;title\x07\rfake\u202eevil"
HOSTILE_SHOWN = "x\\x1b[2J\\x1b]0;title\\x07\\rfake\\u202eevil"


def test_terminal_controls_from_the_store_are_shown_escaped(project: Path) -> None:
    # An error quoting a job's argument went to the terminal raw, in the worker's log and in
    # `jobs` / `show`: escape sequences could clear it, retitle it or rewrite a line.
    schedule(project, ("Reject", [HOSTILE], "default"))
    code, output = run("workoff")
    assert code == 1 and f"ValueError: bad email {HOSTILE_SHOWN}" in output
    code, listing = run("jobs")
    assert code == 0 and f"ValueError: bad email {HOSTILE_SHOWN}" in listing
    code, shown = run("show", "1")
    assert code == 0 and "ValueError: bad email x\\x1b[2J\\x1b]0;title\\x07" in shown
    code, as_json = run("show", "1", "--json")
    assert code == 0
    document = json.loads(as_json[as_json.index("{") :])
    assert document["args"] == [HOSTILE]  # the same JSON document, escaped for the terminal
    assert "\\u202e" in as_json
    for text in (output, listing, shown, as_json):
        assert not {"\x1b", "\x07", "\r", "\u202e", "\x9b"} & set(text)


def test_json_for_a_terminal_escapes_c1_and_bidi_and_stays_the_same_document() -> None:
    from queuebox.cli.common import json_shown

    value = ["naïve ☕", "csi\x9b2J", "bidi\u202eevil", "nul\x00"]
    text = json_shown(json.dumps(value, ensure_ascii=False))
    assert json.loads(text) == value
    assert "naïve ☕" in text and "\\u009b" in text and "\\u202e" in text
    assert not {"\x9b", "\u202e", "\x00"} & set(text)


def test_pause_notes_a_queue_the_store_holds_no_job_of(memory_store: MemoryAdapter) -> None:
    # `queuebox pause emial` paused a queue nobody uses and said only "emial: paused".
    handler = '{"name": "Append", "args": ["x"], "kwargs": {}}'
    memory_store.schedule_one(NewJob(name="Append", handler=handler, queue="email", priority=50))
    code, output = run("pause", "email", "emial")
    assert code == 0, output
    assert "email: paused" in output and "emial: paused" in output
    assert "no job of queue 'emial'" in output and "no job of queue 'email'" not in output
    assert memory_store.paused_queues() == {"email", "emial"}


def test_status_shows_paused_queues_and_the_workers_of_every_machine(
    memory_store: MemoryAdapter,
) -> None:
    started = memory_store.now()
    busy = WorkerInfo(
        id="w-busy",
        host="box-a",
        pid=101,
        queues=("email",),
        concurrency=4,
        version="test",
        started_at=started,
        jobs=(RunningJob(id="job-1", name="Append", queue="email", started_at=started),),
    )
    gone = WorkerInfo(
        id="w-gone",
        host="box-b",
        pid=202,
        queues=None,
        concurrency=1,
        version="test",
        started_at=started,
    )
    memory_store.beat(busy, ttl=60)
    memory_store.beat(gone, ttl=5)
    memory_store.advance(10)  # box-b's worker misses its beats; box-a's is within its ttl
    assert memory_store.pause("email") is True
    code, output = run("status")
    assert code == 0, output
    assert "paused: email (no worker claims from them;" in output
    assert "workers in the store: 1 alive on 1 host(s), 1 lost" in output
    assert "box-a pid 101 (w-busy) queues email: running 1 of 4" in output
    assert "job-1 Append (email) for 10s" in output
    assert "box-b pid 202 (w-gone) queues *: lost (no beat since 10s)" in output

    code, output = run("status", "--json")
    document = json.loads(output)
    assert document["paused"] == ["email"]
    by_id = {w["id"]: w for w in document["workers"]}
    assert by_id["w-gone"]["lost"] is True and by_id["w-busy"]["lost"] is False
    assert by_id["w-busy"]["jobs"][0]["id"] == "job-1"


def test_status_of_an_empty_store(project: Path) -> None:
    # SQLite keeps a worker registry: status says how many workers it holds (none).
    expected = f"store: {store_url(project)}\nno jobs\nworkers in the store: 0 alive on 0 host(s)\n"
    assert run("status") == (0, expected)


def test_clear_asks_on_a_terminal(
    project: Path, store: Adapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule(project, ("Append", ["x"], "a"), ("Append", ["y"], "b"))
    monkeypatch.setattr("queuebox.cli.admin._stdin_is_terminal", lambda: True)
    code, output = run("clear", stdin="n\n")
    assert code == 1 and f"Delete 2 job(s) in every queue of {store_url(project)}?" in output
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
    assert code == 0 and "Explode()" in output and "RuntimeError: kaboom" in output
    [failing] = store.list_jobs(states=[JobState.SCHEDULED])
    code, output = run("jobs", "--json")
    assert json.loads(output.splitlines()[1])["id"] == failing.id  # after the store line
    where = f"store: {store_url(project)}\n"
    assert run("retry", failing.id) == (0, f"{where}{failing.id}: queued to run now\n")
    code, output = run("retry", "424242")
    assert code == 1 and "not found" in output
    assert run("delete", failing.id) == (0, f"{where}{failing.id}: deleted\n")
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
    assert code == 0 and f"schema ready in {store_url(project)}" in output
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
        command = child_command(slot)
        assert command[command.index("--log-level") + 1] == level
        assert command.index("--log-level") < command.index("work")
    assert run("-v", "status")[0] == 0
    command = child_command(slot, global_args=["--verbose"])
    assert command[command.index("--log-level") + 1] == "DEBUG" and "--verbose" in command


# -- jobs, show, lapsed locks ---------------------------------------------------------------------


def test_jobs_prints_a_header_and_the_arguments(project: Path, store: Adapter) -> None:
    code, output = run("jobs")
    assert (code, output) == (0, f"store: {store_url(project)}\nno jobs\n")
    code, output = run("jobs", "--state", "failed", "-q", "email")
    assert output.endswith("no jobs (queue email; state failed)\n")
    schedule(project, ("Append", [{"n": 1, "s": "hello"}], "email"))
    code, output = run("jobs")
    assert code == 0
    header, row = output.splitlines()[1:]
    assert header.split() == [
        "id",
        "state",
        "queue",
        "priority",
        "attempts",
        "run_at",
        "(UTC)",
        "job",
        "last",
        "error",
    ]
    assert row.split()[1:5] == ["ready", "email", "50", "0"]
    assert 'Append({"n": 1, "s": "hello"})' in row


def test_show_prints_the_whole_last_error(project: Path, store: Adapter) -> None:
    schedule(project, ("Explode", [], "default"))
    run("workoff")
    [job] = store.list_jobs()
    code, output = run("show", job.id)
    assert code == 0, output
    fields = dict(line.split(":", 1) for line in output.splitlines()[1:9])
    assert {key: value.strip() for key, value in fields.items()} == {
        "job": f"{job.id}: Explode",
        "queue": "default",
        "priority": "50",
        "state": "scheduled",
        "attempts": "1",
        "arguments": "[]",
        "keywords": "{}",
        "run_at": f"{job.run_at:%Y-%m-%d %H:%M:%S.%f} UTC",
    }
    assert "created_at:" in output and "updated_at:" in output
    error = output.split("last error:\n", 1)[1]
    assert error.splitlines()[0] == "  RuntimeError: kaboom"
    assert "  Traceback (most recent call last):" in error
    assert 'raise RuntimeError("kaboom")' in error
    code, output = run("show", job.id, "--json")
    document = json.loads(output.split("\n", 1)[1])
    assert document["args"] == [] and document["last_error"].startswith("RuntimeError: kaboom\n")
    code, output = run("show", "424242")
    assert code == 1 and "no job '424242' in this store" in output


def test_lapsed_locks_are_shown_as_claimable(project: Path, store: Adapter) -> None:
    schedule(project, ("Append", ["a"], "default"), ("Append", ["b"], "default"))
    [held, lapsed] = store.claim("w1", None, limit=2, lease=0.2)
    time.sleep(0.5)
    assert store.extend(held.id, held.lock_token or "", lease=60)
    code, output = run("jobs")
    assert code == 0, output
    rows = {line.split()[0]: line for line in output.splitlines()[2:]}
    assert rows[held.id].split()[1] == "running"
    assert "lock lapsed" not in rows[held.id]
    assert "running, lock lapsed 0s ago (claimable again)" in rows[lapsed.id]
    code, output = run("status")
    assert (
        "lapsed locks: 1 running job(s) whose worker is gone or stalled (nobody renews the "
        f"lock); the next claim takes them again: {lapsed.id}"
    ) in output
    data = json.loads(run("status", "--json")[1])
    assert [row["id"] for row in data["lapsed_locks"]] == [lapsed.id]
    assert "lock lapsed" in run("show", lapsed.id)[1]


# -- refusals and bounds --------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["work", "workoff", "start"])
def test_workers_refuse_to_run_without_an_app_module(tmp_path: Path, command: str) -> None:
    (tmp_path / "queuebox.toml").write_text('url = "sqlite:///jobs.db"\n')
    code, output = run(command)
    assert code == 1
    assert "no app module given: name the module(s) that define your jobs with --app" in output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("work", "-n", "99999999999999999999"), "at most 512 per command"),
        (("workoff", "-n", "default:400,email:400"), "asks for 800 worker processes"),
        (("start", "-n", "513"), "asks for 513 worker processes"),
        (("work", "--batch-size", "1001"), "1001 is not in the range 1<=x<=1000"),
        (("work", "--max-attempts", "99999999999999999999"), "is not in the range 1<=x<=500"),
        (("work", "--sleep-delay", "nan"), "'nan' is not a number of seconds"),
        (("work", "--sleep-delay", "1e300"), "is not in the range 0<x<=3600"),
        (("work", "--max-runtime", "inf"), "is not in the range"),
        (("start", "--wait", "nan"), "'nan' is not a number of seconds"),
        (("start", "--max-memory", "1e400"), "is not in the range"),
        (("start", "--max-jobs", "1e3"), "is not a valid integer"),
        (("stop", "--timeout", "-1"), "is not in the range"),
        (("jobs", "--limit", "99999999999999999999"), "is not in the range 1<=x<=10000"),
        (("workoff", "--give-up-after", "nan"), "'nan' is not a number of seconds"),
    ],
)
def test_out_of_range_options_get_a_clear_error(
    project: Path, args: tuple[str, ...], expected: str
) -> None:
    code, output = run(*args)
    assert code in (1, 2), output
    assert expected in output
    assert "Traceback" not in output


def test_config_file_worker_settings_are_bounded_too(project: Path) -> None:
    (project / "queuebox.toml").write_text(
        'url = "sqlite:///jobs.db"\napp = ["cli_jobs"]\n[[workers]]\ncount = 9223372036854775807\n'
    )
    code, output = run("work")
    assert code == 1 and "the [[workers]] counts asks for 9223372036854775807" in output
    (project / "queuebox.toml").write_text(
        'url = "sqlite:///jobs.db"\napp = ["cli_jobs"]\n[[workers]]\nlease = 1e300\n'
    )
    code, output = run("workoff")
    assert code == 1 and "worker setting lease=1e+300 (queues *) is out of range" in output
    (project / "queuebox.toml").write_text(  # --stop-grace's bound held, the file's did not
        'url = "sqlite:///jobs.db"\napp = ["cli_jobs"]\n[[workers]]\nstop_grace = 1e300\n'
    )
    code, output = run("workoff")
    assert code == 1 and "worker setting stop_grace=1e+300 (queues *) is out of range" in output


def test_n_and_q_say_what_they_replace(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "queuebox.toml").write_text(
        'url = "sqlite:///jobs.db"\napp = ["cli_jobs"]\n'
        '[[workers]]\nqueue = "email"\ncount = 2\nmax_attempts = 3\n[[workers]]\nqueue = "*"\n'
    )
    groups = worker_groups(None, {})
    assert [(g.queues, g.count) for g in groups] == [(("email",), 2), (None, 1)]
    assert capsys.readouterr().err == ""
    groups = worker_groups("3", {})
    assert [(g.queues, g.count, g.max_attempts) for g in groups] == [(("email",), 3, 3)]
    note = capsys.readouterr().err
    assert f"note: -n 3 replaces the worker groups of {project / 'queuebox.toml'}" in note
    assert "(email x2, * x1); the new groups take the first group's settings" in note
    groups = worker_groups(None, {"queues": ("default",)})
    assert [(g.queues, g.count) for g in groups] == [(("default",), 2)]
    assert "note: -q replaces the worker groups of" in capsys.readouterr().err


def test_an_unexpected_error_is_one_line(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Adapter) -> list[object]:
        raise KeyError("the store's reply had no 'counts'")

    monkeypatch.setattr(SQLiteAdapter, "counts", broken)
    code, output = run("status")
    assert code == 1
    assert output.startswith("Error: unexpected KeyError: ")
    assert "run with -v for the traceback" in output and "Traceback" not in output
    result = CliRunner().invoke(cli, ["-v", "status"])
    assert isinstance(result.exception, KeyError)  # -v lets the traceback through
