"""``rediss://`` URLs: the store works over TLS, and a URL that asks for TLS from a server
without it fails within the connect timeout, saying what to check.

The TLS server is a ``redis-server`` this module starts on a free loopback port with a
certificate made for the test (``openssl``), and stops itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import redis
from helpers import stop_server

from queuebox.backends import from_url
from queuebox.backends.redis import RedisAdapter
from queuebox.errors import StorageUnavailable
from queuebox.testing import new_job

#: The connect timeout of the failing URLs: the error must come within a few of these, not
#: after the 30 s socket_timeout (which bounded the handshake before).
CONNECT_TIMEOUT = 0.5


def _fails_fast(url: str) -> StorageUnavailable:
    def connect() -> None:
        adapter = from_url(url)  # a cluster client connects here, a plain one at first use
        try:
            adapter.migrate()
        finally:
            adapter.close()

    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as caught:
        connect()
    assert time.monotonic() - started < 10 * CONNECT_TIMEOUT
    assert "rediss:// URL speaks TLS" in str(caught.value)
    return caught.value


def test_tls_to_a_server_that_never_answers_fails_within_the_connect_timeout() -> None:
    # A listening socket nobody reads: the TCP connect succeeds, the handshake gets no reply,
    # as with a Redis server without TLS.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        url = f"rediss://127.0.0.1:{port}/0?socket_connect_timeout={CONNECT_TIMEOUT}"
        _fails_fast(url)
        _fails_fast(url.replace("rediss://", "rediss+cluster://").replace("/0?", "?"))


def test_tls_to_a_plain_redis_server_fails_within_the_connect_timeout(redis_url: str) -> None:
    plain = urlsplit(redis_url)
    url = f"rediss://{plain.netloc}/0?socket_connect_timeout={CONNECT_TIMEOUT}"
    error = _fails_fast(url)
    assert "use redis:// for a server without TLS" in str(error)


def test_a_plain_url_that_cannot_connect_gets_no_tls_hint() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: the connect is refused
        adapter = from_url(f"redis://127.0.0.1:{port}/0?socket_connect_timeout=0.5")
        with pytest.raises(StorageUnavailable) as caught:
            adapter.migrate()
        adapter.close()
    assert "TLS" not in str(caught.value)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    cert, key = folder / "server.crt", folder / "server.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def tls_url(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``rediss://`` URL of a TLS-only server this fixture starts. It asks for
    ``redis_url``, which puts it in the Redis server tier (that machine has ``redis-server``)."""
    missing = [tool for tool in ("redis-server", "openssl") if shutil.which(tool) is None]
    if missing:
        message = f"the TLS tests need {' and '.join(missing)} on PATH"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("redis-tls")
    cert, key = _certificate(root)
    port = _free_port()
    server = subprocess.Popen(
        [
            "redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
            "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
            "--save", "", "--appendonly", "no", "--dir", str(root),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={quote(str(cert))}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if server.poll() is not None:
                output = server.stdout.read().decode(errors="replace") if server.stdout else ""
                if "not built with TLS" in output or "tls-port" in output:
                    pytest.skip(f"this redis-server cannot serve TLS: {output[-300:]}")
                pytest.fail(f"the TLS redis-server exited: {output[-600:]}")
            try:
                if redis.Redis.from_url(url, socket_connect_timeout=1).ping():
                    break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        stop_server(server)
        if server.stdout is not None:
            server.stdout.close()


def test_the_store_runs_jobs_over_tls(tls_url: str) -> None:
    adapter = from_url(tls_url)  # the server is this module's own: no prefix to isolate
    assert isinstance(adapter, RedisAdapter)
    try:
        adapter.migrate()
        [stored] = adapter.schedule([new_job(name="OverTLS", queue="tls")])
        [claimed] = adapter.claim("tls-worker", ["tls"], limit=1, lease=30)
        assert claimed.id == stored.id and claimed.name == "OverTLS"
        assert claimed.lock_token is not None
        assert adapter.complete(claimed.id, claimed.lock_token)
        assert adapter.get(stored.id) is None
    finally:
        adapter.close()


def test_a_certificate_the_client_does_not_trust_is_refused(tls_url: str) -> None:
    untrusted = tls_url.split("?", 1)[0] + f"?socket_connect_timeout={CONNECT_TIMEOUT}"
    adapter = from_url(untrusted)
    try:
        with pytest.raises(StorageUnavailable, match="certificate verify failed"):
            adapter.migrate()
    finally:
        adapter.close()
