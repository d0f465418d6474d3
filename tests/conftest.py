"""Shared fixtures: the real servers integration tests need, and a clean job registry.

Test tiers are chosen by the fixtures a test asks for, not by where it lives:

* a test that asks for ``redis_url`` or ``postgres_url`` (directly or through another
  fixture, such as ``any_store``'s server params) is an integration test, marked ``redis`` /
  ``postgres`` and ``integration``;
* tests under ``tests/chaos`` are marked ``chaos`` (their own tier, run on its own:
  ``pytest -m chaos``);
* every other test is marked ``unit``: ``pytest -m unit`` needs no server and skips nothing
  for a missing one.

Without a reachable server integration tests are skipped with the reason, so a laptop still
runs the SQLite and in-memory tests; when ``CI`` is set, a missing server fails them instead.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from queuebox import config, registry
from queuebox.backends import from_url
from queuebox.backends.base import Adapter, Purgeable
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


@pytest.hookimpl(tryfirst=True)  # before -m deselects by the markers added here
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        needs = set(getattr(item, "fixturenames", ()))
        if "redis_url" in needs:
            item.add_marker(pytest.mark.redis)
        if "postgres_url" in needs:
            item.add_marker(pytest.mark.postgres)
        if "tests/chaos/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.chaos)
        markers = {marker.name for marker in item.iter_markers()}
        if "chaos" in markers:
            continue
        tier = "integration" if markers & {"redis", "postgres"} else "unit"
        item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _server("Redis", REDIS_URL, 6379, "QUEUEBOX_TEST_REDIS_URL")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    return _server("PostgreSQL", POSTGRES_URL, 5432, "QUEUEBOX_TEST_POSTGRES_URL")


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema name for one test's PostgreSQL store; dropped afterwards."""
    import psycopg
    from psycopg import sql

    schema = f"qb_test_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def pg_url(postgres_url: str, pg_schema: str) -> str:
    """The store URL of ``pg_schema``."""
    return f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={pg_schema}"


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


def _open_store(name: str, request: pytest.FixtureRequest, folder: Path) -> tuple[str, str]:
    """``(url, tag)`` of a fresh store of kind ``name``: its own SQLite file, PostgreSQL
    schema or Redis key prefix."""
    tag = "t" + uuid.uuid4().hex[:12]
    if name == "sqlite":
        return f"sqlite:///{folder / 'store.db'}", tag
    if name == "postgres":
        return f"{request.getfixturevalue('postgres_url')}?schema={tag}", tag
    return f"{request.getfixturevalue('redis_url')}?prefix={tag}", tag


def _remove_store(name: str, url: str, tag: str, request: pytest.FixtureRequest) -> None:
    if name == "postgres":
        _drop_schema(request.getfixturevalue("postgres_url"), tag)
    elif name == "redis":
        adapter = from_url(url)
        try:
            if isinstance(adapter, Purgeable):
                adapter.purge()
        finally:
            adapter.close()


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Adapter]:
    """Each store in turn, fresh and empty, configured as queuebox's store for the test."""
    name = request.param
    if name == "memory":
        adapter: Adapter = MemoryAdapter()
        url, tag = "memory://", ""
    else:
        url, tag = _open_store(name, request, tmp_path)
        adapter = from_url(url)
    config.configure(adapter=adapter)
    try:
        yield adapter
    finally:
        adapter.close()
        if name != "memory":
            _remove_store(name, url, tag, request)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of each store that worker processes can share, fresh and empty; removed
    after the test."""
    name = request.param
    url, tag = _open_store(name, request, tmp_path)
    try:
        yield url
    finally:
        _remove_store(name, url, tag, request)


def _drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # our own name
