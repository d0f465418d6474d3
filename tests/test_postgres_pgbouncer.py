"""The PostgreSQL store through PgBouncer in transaction mode, as docs/postgres.md says:
everything but ``LISTEN`` works, and with ``?wakeup=off`` workers poll instead.

A module fixture starts a ``pgbouncer`` process on a free loopback port (``pool_mode =
transaction``, trust authentication, in front of the test database) and stops it afterwards.
PgBouncer is not one of the servers the test run needs: without the binary (``apt-get install
pgbouncer``; ``.ci/run`` installs it) the module is skipped with that reason.
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from helpers import stop_server
from psycopg import sql

import queuebox
from queuebox import Job
from queuebox.backends import from_url
from queuebox.backends.base import JobState
from queuebox.backends.postgres import PostgresAdapter
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import StopFlag
from queuebox.runner.worker import Worker
from queuebox.testing import (
    AdapterContract,
    AdapterFactory,
    TransactionHandle,
    UnreachableFactory,
    new_job,
)

pytestmark = pytest.mark.postgres


def _pgbouncer() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if found is None:
        pytest.skip("the PgBouncer tests need the pgbouncer binary (apt-get install pgbouncer)")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def bouncer_url(postgres_url: str) -> Iterator[str]:
    """A ``postgresql://`` URL of the test database through PgBouncer, transaction mode."""
    binary = _pgbouncer()
    # Not under pytest's tmp_path: PgBouncer may run as another user (see below), who must
    # reach its files.
    with tempfile.TemporaryDirectory(prefix="queuebox-pgbouncer-") as folder:
        yield from _run_pgbouncer(binary, postgres_url, Path(folder))


def _run_pgbouncer(binary: str, postgres_url: str, root: Path) -> Iterator[str]:
    server = urlsplit(postgres_url)
    user = server.username or getpass.getuser()
    database = server.path.lstrip("/") or "postgres"
    port = _free_port()
    (root / "users.txt").write_text(f'"{user}" ""\n')
    (root / "pgbouncer.ini").write_text(
        f"[databases]\n{database} = host={server.hostname or '127.0.0.1'} "
        f"port={server.port or 5432} dbname={database}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {root / 'users.txt'}\n"
        "pool_mode = transaction\nmax_client_conn = 200\ndefault_pool_size = 8\n"
        f"logfile = {root / 'pgbouncer.log'}\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    command = [binary, str(root / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root: drop to the server's user
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("as root, PgBouncer needs a 'postgres' user to run as")
        shutil.chown(root, "postgres")
        command[1:1] = ["-u", "postgres"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"postgresql://{user}@127.0.0.1:{port}/{database}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                log = root / "pgbouncer.log"
                if process.poll() is not None or time.monotonic() > deadline:
                    detail = log.read_text() if log.exists() else "(no log)"
                    raise RuntimeError(f"pgbouncer did not start:\n{detail}") from None
                time.sleep(0.1)
        yield url
    finally:
        stop_server(process)


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    name = f"qb_bouncer_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # straight to the server
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def store_url(bouncer_url: str, schema: str) -> str:
    return f"{bouncer_url}?schema={schema}&wakeup=off"


class TestPostgresThroughPgBouncer(AdapterContract):
    """Every promise of the contract, each call through a pooler that hands server
    connections from one transaction to the next client (2,000 jobs in the 4-process test)."""

    concurrent_jobs = 2000

    @pytest.fixture
    def adapter_factory(self, store_url: str) -> AdapterFactory:
        return lambda: from_url(store_url)

    @pytest.fixture
    def unreachable_adapter_factory(self) -> UnreachableFactory:
        return lambda: from_url("postgresql://127.0.0.1:1/test?wakeup=off&connect_timeout=2")

    @pytest.fixture
    def transaction_factory(self, bouncer_url: str) -> Iterator[Callable[[], TransactionHandle]]:
        opened: list[psycopg.Connection[Any]] = []

        def begin() -> TransactionHandle:
            conn = psycopg.connect(bouncer_url)  # a transaction until commit, as apps do
            opened.append(conn)
            return SimpleNamespace(connection=conn, commit=conn.commit, rollback=conn.rollback)

        yield begin
        for conn in opened:
            conn.close()


def test_workers_poll_when_wakeups_are_off(store_url: str) -> None:
    ran: list[float] = []

    class Polled(Job):
        def perform(self) -> None:
            ran.append(time.monotonic())

    adapter, producer = from_url(store_url), from_url(store_url)
    stop = StopFlag()
    try:
        assert not adapter.capabilities.wakeup, "?wakeup=off must tell the worker to poll"
        queuebox.configure(adapter=producer)
        worker = Worker(adapter, WorkerSettings(sleep_delay=0.2), stop=stop)
        thread = threading.Thread(target=worker.run)
        thread.start()
        time.sleep(0.5)  # idle, polling
        enqueued = time.monotonic()
        Polled.perform_later()
        deadline = enqueued + 5
        while not ran and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.request()
        thread.join(10)
        assert ran and ran[0] - enqueued < 1.0, "the polling worker did not take the job"
        assert worker.summary.succeeded == 1
    finally:
        adapter.close()
        producer.close()


def test_transactional_enqueue_through_the_pooler(bouncer_url: str, store_url: str) -> None:
    adapter = from_url(store_url)
    assert isinstance(adapter, PostgresAdapter)
    try:
        adapter.migrate()
        with psycopg.connect(bouncer_url) as app:
            [kept] = adapter.schedule_with(app, [new_job("email", args=["kept"])])
            assert adapter.get(kept.id) is None, "visible before the caller committed"
            app.commit()
            [dropped] = adapter.schedule_with(app, [new_job("email", args=["dropped"])])
            app.rollback()
        assert adapter.get(dropped.id) is None
        stored = adapter.get(kept.id)
        assert stored is not None and stored.state is JobState.READY
    finally:
        adapter.close()
