"""Shared fixtures: the real servers integration tests need, and a clean job registry.

Integration tests ask for ``redis_url`` or ``postgres_url``. Without a reachable server they
are skipped with the reason, so a laptop still runs the SQLite and in-memory tests; when the
``CI`` environment variable is set, a missing server fails the test instead.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from queuebox import config, registry
from queuebox.backends.memory import MemoryAdapter

REDIS_URL = os.environ.get("QUEUEBOX_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("QUEUEBOX_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")


def _reachable(url: str, default_port: int) -> str | None:
    """``None`` when a TCP connection to the URL's host opens, else why not."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return f"{host}:{port} is not reachable ({exc})"


def _server(name: str, url: str, default_port: int, env_var: str) -> str:
    problem = _reachable(url, default_port)
    if problem is None:
        return url
    message = f"{name} tests need a server: {problem}; start one or set {env_var}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set, so a missing server is a failure)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _server("Redis", REDIS_URL, 6379, "QUEUEBOX_TEST_REDIS_URL")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return _server("PostgreSQL", POSTGRES_URL, 5432, "QUEUEBOX_TEST_POSTGRES_URL")


@pytest.fixture(autouse=True)
def isolated_registry() -> Iterator[None]:
    """Each test sees only the job classes it defines (plus those imported before)."""
    with registry.isolated():
        yield


@pytest.fixture(autouse=True)
def clean_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No configuration leaks in from the environment, the repository or another test."""
    monkeypatch.delenv("QUEUEBOX_URL", raising=False)
    monkeypatch.delenv("QUEUEBOX_APP", raising=False)
    monkeypatch.chdir(tmp_path)
    config.reset()
    yield
    config.reset()


@pytest.fixture
def memory_store() -> MemoryAdapter:
    """A fresh in-memory store, configured as queuebox's store for this test."""
    adapter = MemoryAdapter()
    config.configure(adapter=adapter)
    return adapter
