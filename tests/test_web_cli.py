"""``queuebox web``: safe by default (loopback, or auth / read-only), and a real server
process that answers as the options say."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

import queuebox.cli.web  # registers the command on the group
from queuebox.cli.common import cli
from queuebox.cli.web import is_loopback

# Imports the command's module before the group runs, whether or not the package's
# __init__ imports it yet.
#: Where the command refuses to bind without auth (the tests bind there only with auth).
ALL_INTERFACES = "0.0.0.0"  # noqa: S104

LAUNCH = "import queuebox.cli.web, queuebox.cli; queuebox.cli.main()"


def test_loopback_hosts() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in (ALL_INTERFACES, "::", "192.168.1.10", "example.com", "localhost.example.com"):
        assert not is_loopback(host), host
    assert queuebox.cli.web.web.name == "web"


@pytest.mark.parametrize("host", [ALL_INTERFACES, "::", "10.1.2.3", "dashboard.example.com"])
def test_binding_beyond_loopback_needs_auth_or_read_only(host: str) -> None:
    result = CliRunner().invoke(cli, ["--url", "memory://", "web", "--host", host])
    assert result.exit_code == 1
    assert "--auth USER:PASSWORD" in result.output and "--read-only" in result.output


def test_a_malformed_auth_is_refused_without_echoing_it() -> None:
    result = CliRunner().invoke(cli, ["--url", "memory://", "web", "--auth", "no-colon-secret"])
    assert result.exit_code == 1
    assert "USER:PASSWORD" in result.output and "no-colon-secret" not in result.output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    def __init__(self, folder: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log = folder / f"web-{self.port}.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEBOX_")}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", LAUNCH, "web", "--port", str(self.port), *args],
                cwd=folder,
                env={**clean, "QUEUEBOX_URL": f"sqlite:///{folder / 'web.db'}", **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"queuebox web did not start:\n{self.output()}") from None
                time.sleep(0.1)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path


def test_the_server_serves_the_dashboard_on_loopback_only(folder: Path) -> None:
    server = Server(folder)
    try:
        status, body = server.get("/")
        assert status == 200 and "queuebox" in body
        assert server.get("/metrics")[0] == 200
        status, body = server.get("/api/meta", {"Host": f"rebound.example:{server.port}"})
        assert status == 421
    finally:
        server.stop()
    # uvicorn shuts down gracefully, then ends with the signal it was sent.
    assert server.process.returncode in (0, -signal.SIGTERM), server.output()
    assert "Traceback" not in server.output()
    assert f"dashboard: http://127.0.0.1:{server.port}/" in server.output()


def test_auth_from_the_environment_guards_every_request(folder: Path) -> None:
    server = Server(folder, "--host", ALL_INTERFACES, env={"QUEUEBOX_WEB_AUTH": "ops:pa55word"})
    try:
        assert server.get("/")[0] == 401
        assert server.get("/metrics")[0] == 401
        good = base64.b64encode(b"ops:pa55word").decode()
        status, _ = server.get("/api/overview", {"Authorization": f"Basic {good}"})
        assert status == 200
    finally:
        server.stop()
    assert "pa55word" not in server.output()


def test_metrics_only_serves_nothing_else(folder: Path) -> None:
    server = Server(folder, "--metrics-only")
    try:
        status, body = server.get("/metrics")
        assert status == 200 and "queuebox_store_up 1.0" in body
        assert server.get("/")[0] == 404
        assert server.get("/api/overview")[0] == 404
    finally:
        server.stop()
