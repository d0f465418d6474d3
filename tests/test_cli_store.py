"""Every command acts on the store the user configured, and says which one.

The app module configures its store in code (``queuebox.configure(adapter=...)``, the way a
custom store is plugged in); every command must use that store, never the default
``sqlite:///queuebox.db``, which must not even be created.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from queuebox import config
from queuebox.backends.base import Adapter, Cancellation, FlowControl, NewJob
from queuebox.backends.sqlite import SQLiteAdapter
from queuebox.cli import cli

APP_MODULE = textwrap.dedent(
    """
    import os
    from pathlib import Path

    import queuebox
    from queuebox import Job
    from queuebox.backends.sqlite import SQLiteAdapter

    HERE = Path(__file__).parent


    class AppStore(SQLiteAdapter):
        closes = 0

        def close(self):
            AppStore.closes += 1
            super().close()

        def __repr__(self):
            return "AppStore(app.db, password=hunter2 hidden: redis://:hunter2@h/0)"


    queuebox.configure(adapter=AppStore(HERE / "app.db"))


    class Note(Job):
        def perform(self, word):
            fd = os.open(HERE / "ledger.txt", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.write(fd, f"{word} {os.getpid()}\\n".encode())
            os.close(fd)


    class Boom(Job):
        def perform(self):
            raise RuntimeError("boom")
    """
)
STORE_LABEL = "AppStore(app.db, password=*** hidden: redis://:***@h/0) (configured in code)"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "store_app.py").write_text(APP_MODULE)
    (tmp_path / "queuebox.toml").write_text(
        'app = ["store_app"]\n[[workers]]\nqueue = "*"\nsleep_delay = 0.2\nlease = 2\n'
    )
    yield tmp_path
    _stop_everything(tmp_path)


@pytest.fixture
def app_db(project: Path) -> Iterator[Adapter]:
    """The app's own store, opened the way the app opens it."""
    adapter = SQLiteAdapter(project / "app.db")
    adapter.migrate()
    yield adapter
    adapter.close()


def _stop_everything(folder: Path) -> None:
    marker = str(folder).encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if marker in Path(f"/proc/{entry}/cmdline").read_bytes():
                    os.kill(int(entry), signal.SIGKILL)
            except OSError:
                continue


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


def enqueue(store: Adapter, name: str, *args: object) -> str:
    handler = json.dumps({"name": name, "args": list(args), "kwargs": {}})
    [record] = store.schedule([NewJob(name=name, handler=handler, queue="default", priority=50)])
    return record.id


def wait_until(condition: Callable[[], object], timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def ledger(project: Path) -> list[str]:
    path = project / "ledger.txt"
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


# Every command the group offers, with the arguments the test below gives it.
COMMANDS = {
    "migrate",
    "status",
    "jobs",
    "show",
    "retry",
    "delete",
    "workoff",
    "work",
    "start",
    "restart",
    "stop",
    "cancel",
    "pause",
    "resume",
    "clear",
    "web",
}


def test_the_test_below_covers_every_command() -> None:
    visible = {name for name, command in cli.commands.items() if not command.hidden}
    assert visible == COMMANDS, "add the new command to test_every_command_uses_the_app_store"


@pytest.mark.timeout(180)
def test_every_command_uses_the_store_the_app_configures(project: Path, app_db: Adapter) -> None:
    seen: set[str] = set()

    def ok(command: str, *args: str) -> str:
        result = queuebox(project, command, *args)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        output = result.stdout + result.stderr
        assert "hunter2" not in output, (command, output)
        assert not (project / "queuebox.db").exists(), f"{command} created the default store"
        seen.add(command)
        return output

    assert f"schema ready in {STORE_LABEL}" in ok("migrate")
    first = enqueue(app_db, "Note", "first")
    assert f"store: {STORE_LABEL}" in ok("status")
    assert '"first"' in ok("jobs")
    assert "Note" in ok("show", first)
    assert f"{first}: deleted" in ok("delete", first)
    assert app_db.get(first) is None

    enqueue(app_db, "Note", "off")
    boom = enqueue(app_db, "Boom")
    result = queuebox(project, "workoff")
    assert result.returncode == 1 and f"store: {STORE_LABEL}" in result.stdout, result.stderr
    assert "1 succeeded, 0 failed, 1 job to run again" in result.stdout
    seen.add("workoff")
    assert ledger(project) == ["off"]
    assert f"{boom}: queued to run now" in ok("retry", boom)
    app_db.delete(boom)

    with subprocess.Popen(
        [sys.executable, "-m", "queuebox", "work"],
        cwd=project,
        env={k: v for k, v in os.environ.items() if not k.startswith("QUEUEBOX_")},
        stderr=subprocess.PIPE,
        text=True,
    ) as worker:
        enqueue(app_db, "Note", "attached")
        wait_until(lambda: "attached" in ledger(project), what="work to run the job")
        worker.send_signal(signal.SIGTERM)
        _, errors = worker.communicate(timeout=20)
    assert worker.returncode == 0, errors
    assert f"store: {STORE_LABEL}" in errors and "hunter2" not in errors
    seen.add("work")

    shown = enqueue(app_db, "Note", "on the dashboard")
    assert shown in _dashboard_jobs(project)
    app_db.delete(shown)
    seen.add("web")

    assert f"store: {STORE_LABEL}" in ok("start", "-n", "1")
    enqueue(app_db, "Note", "supervised")
    wait_until(lambda: "supervised" in ledger(project), what="the supervisor's worker")
    ok("restart", "-n", "1")
    enqueue(app_db, "Note", "restarted")
    wait_until(lambda: "restarted" in ledger(project), what="the restarted worker")
    assert "stopped in" in ok("stop")

    waiting = enqueue(app_db, "Note", "to cancel")
    for command, args, abilities in (
        ("cancel", (waiting,), Cancellation),
        ("pause", ("default",), FlowControl),
        ("resume", ("default",), FlowControl),
    ):
        if isinstance(app_db, abilities):
            assert f"store: {STORE_LABEL}" in ok(command, *args)
        else:  # a store without the ability: the error names the app's store
            result = queuebox(project, command, *args)
            assert result.returncode == 1 and "the AppStore store cannot" in result.stderr
            assert not (project / "queuebox.db").exists()
            seen.add(command)

    enqueue(app_db, "Note", "to clear")
    assert "job(s) in every queue" in ok("clear", "--yes")
    assert app_db.counts() == []
    assert seen == COMMANDS


def _dashboard_jobs(project: Path) -> str:
    """Run ``queuebox web`` on a free port and answer what its jobs API lists."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEBOX_")}
    with subprocess.Popen(
        [sys.executable, "-m", "queuebox", "web", "--port", str(port)],
        cwd=project,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            body = ""

            def answered() -> bool:
                nonlocal body
                try:
                    url = f"http://127.0.0.1:{port}/api/jobs"
                    with urllib.request.urlopen(url, timeout=5) as response:
                        body = response.read().decode()
                    return True
                except OSError:
                    assert server.poll() is None, "queuebox web ended before it answered"
                    return False

            wait_until(answered, what="queuebox web to answer")
        finally:
            server.terminate()
            _, errors = server.communicate(timeout=20)
    assert f"store: {STORE_LABEL}" in errors and "hunter2" not in errors, errors
    assert not (project / "queuebox.db").exists(), "web created the default store"
    return body


def test_workoff_processes_use_the_app_store(project: Path, app_db: Adapter) -> None:
    for n in range(6):
        enqueue(app_db, "Note", f"job{n}")
    result = queuebox(project, "workoff", "-n", "2")
    assert result.returncode == 0, result.stderr
    assert f"store: {STORE_LABEL}" in result.stdout
    assert sorted(ledger(project)) == [f"job{n}" for n in range(6)]
    assert not (project / "queuebox.db").exists()


def test_the_command_closes_a_store_it_did_not_build(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project))
    sys.modules.pop("store_app", None)
    result = CliRunner().invoke(cli, ["status"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    store_app = sys.modules["store_app"]
    assert store_app.AppStore.closes == 1
    assert repr(config.get_adapter()).startswith("AppStore(")  # still the configured store


def test_status_from_a_subfolder_imports_the_app_beside_the_config(project: Path) -> None:
    nested = project / "src" / "deep"
    nested.mkdir(parents=True)
    result = queuebox(nested, "status")
    assert result.returncode == 0, result.stderr
    assert f"store: {STORE_LABEL}" in result.stdout
    assert list(nested.iterdir()) == [], "nothing may be created in the subfolder"


def test_a_relative_sqlite_path_in_the_config_is_beside_it(tmp_path: Path) -> None:
    (tmp_path / "queuebox.toml").write_text('url = "sqlite:///var/jobs.db"\n')
    (tmp_path / "var").mkdir()
    nested = tmp_path / "sub"
    nested.mkdir()
    result = queuebox(nested, "migrate")
    assert result.returncode == 0, result.stderr
    assert f"schema ready in sqlite:///{tmp_path / 'var' / 'jobs.db'}" in result.stdout
    assert (tmp_path / "var" / "jobs.db").exists() and list(nested.iterdir()) == []
