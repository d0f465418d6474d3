"""Records written past queuebox (a time out of range, bytes that are not UTF-8, an attempt
count at the integer limit, a lock without an expiry) never stop a claim or hide the other
jobs: each fails alone, on SQLite and on PostgreSQL. And PostgreSQL's clock is read as UTC
whatever the session's TimeZone."""

from __future__ import annotations

import re
import socket
import sqlite3
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from queuebox.backends.base import UNREADABLE_NAME, Adapter, JobState, MinuteStats, WorkerInfo
from queuebox.backends.postgres import PostgresAdapter
from queuebox.backends.sqlite import SQLiteAdapter
from queuebox.errors import ConfigurationError, StorageUnavailable
from queuebox.testing import new_job

RawWrite = Callable[[str, dict[str, Any]], None]


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[tuple[Adapter, RawWrite]]:
    path = tmp_path / "jobs.db"
    with closing(SQLiteAdapter(path)) as adapter:
        adapter.migrate()

        def write(statement: str, params: dict[str, Any]) -> None:
            with closing(sqlite3.connect(path, isolation_level=None)) as raw:
                raw.execute(statement.format(jobs="queuebox_jobs"), params)

        yield adapter, write


@pytest.fixture
def postgres_store(postgres_url: str) -> Iterator[tuple[Adapter, RawWrite]]:
    schema = f"qb_test_{uuid.uuid4().hex[:12]}"
    jobs = sql.Identifier(schema, "queuebox_jobs")
    with psycopg.connect(postgres_url, autocommit=True) as raw:
        with closing(PostgresAdapter(postgres_url, schema=schema)) as adapter:
            adapter.migrate()

            def write(statement: str, params: dict[str, Any]) -> None:
                statement = re.sub(r":([a-z]+)", r"%(\1)s", statement)  # sqlite3's style
                raw.execute(sql.SQL(statement).format(jobs=jobs), params)

            yield adapter, write
        raw.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest) -> tuple[Adapter, RawWrite]:
    return request.getfixturevalue(f"{request.param}_store")  # type: ignore[no-any-return]


def _is_sqlite(adapter: Adapter) -> bool:
    return isinstance(adapter, SQLiteAdapter)


# Values no Python datetime holds, as each store keeps times.
_SQLITE_BAD_TIMES = [-(10**18), 10**18]  # microseconds: before year 1, after year 9999
_POSTGRES_BAD_TIMES = ["-infinity", "infinity", "20000-01-01 00:00:00+00"]


def _bad_times(adapter: Adapter) -> list[Any]:
    return _SQLITE_BAD_TIMES if _is_sqlite(adapter) else _POSTGRES_BAD_TIMES


def _set(adapter: Adapter, write: RawWrite, job_id: str, column: str, value: Any) -> None:
    target = ":value" if _is_sqlite(adapter) else "CAST(:value AS timestamptz)"
    write(
        f"UPDATE {{jobs}} SET {column} = {target} WHERE id = :id",  # noqa: S608 - our names
        {"value": value, "id": int(job_id)},
    )


def test_a_time_out_of_range_fails_alone(store: tuple[Adapter, RawWrite]) -> None:
    adapter, write = store
    good = adapter.schedule_one(new_job("q", 90))
    bad = []
    for value in _bad_times(adapter):
        for column in ("run_at", "created_at"):
            record = adapter.schedule_one(new_job("q"))
            _set(adapter, write, record.id, column, value)
            bad.append(record.id)
    for job_id in bad:
        shown = adapter.get(job_id)
        assert shown is not None and shown.state is JobState.FAILED, shown
        assert shown.name == UNREADABLE_NAME and shown.unreadable
        assert shown.last_error and "UnreadableRecord" in shown.last_error
    listed = {job.id: job for job in adapter.list_jobs(limit=50)}
    assert set(listed) == {good.id, *bad}
    assert listed[good.id].state is JobState.READY
    claimed = adapter.claim("w", ["q"], limit=50, lease=60)
    by_id = {job.id: job for job in claimed}
    assert good.id in by_id and by_id[good.id].unreadable is None
    for job_id in set(bad) & set(by_id):  # the due ones: each comes with its token
        job = by_id[job_id]
        assert job.unreadable and job.lock_token and job.state is JobState.RUNNING
        assert adapter.fail(job_id, job.lock_token, error=job.last_error or "")
    assert adapter.claim("w", ["q"], limit=50, lease=60) == []


def test_an_attempt_count_at_the_limit_does_not_break_the_claim(
    store: tuple[Adapter, RawWrite],
) -> None:
    adapter, write = store
    record = adapter.schedule_one(new_job("q"))
    limit = 2**63 - 1 if _is_sqlite(adapter) else 2**31 - 1
    write("UPDATE {jobs} SET attempts = :n", {"n": limit})
    [job] = adapter.claim("w", ["q"], limit=5, lease=60)
    assert job.id == record.id and job.attempts == limit
    assert adapter.release(job.id, job.lock_token or "")


def test_a_lock_without_an_expiry_is_taken_over(store: tuple[Adapter, RawWrite]) -> None:
    adapter, write = store
    record = adapter.schedule_one(new_job("q"))
    locked = "UPDATE {jobs} SET locked_at = created_at, locked_by = 'gone', lock_token = 't'"
    write(locked, {})
    adapter.wait_for_work(["q"], 5)  # returns at once: the job can be taken now
    [job] = adapter.claim("w", ["q"], limit=5, lease=60)
    assert job.id == record.id and job.attempts == 1
    assert job.last_error is not None and "an unknown time" in job.last_error


def test_text_that_is_not_utf8_fails_alone(sqlite_store: tuple[Adapter, RawWrite]) -> None:
    adapter, write = sqlite_store
    good = adapter.schedule_one(new_job("q", 90))
    bad = adapter.schedule_one(new_job("q"))
    write("UPDATE {jobs} SET handler = CAST(x'7b22ff22' AS TEXT) WHERE id = :id", {"id": bad.id})
    shown = adapter.get(bad.id)
    assert shown is not None and shown.state is JobState.FAILED
    assert shown.unreadable and "not UTF-8" in shown.unreadable
    assert [job.id for job in adapter.list_jobs()] == [bad.id, good.id]
    claimed = {job.id: job for job in adapter.claim("w", ["q"], limit=5, lease=60)}
    assert set(claimed) == {good.id, bad.id} and claimed[bad.id].lock_token
    assert adapter.fail(bad.id, claimed[bad.id].lock_token or "", error="unreadable")


def test_a_worker_record_nested_too_deeply_is_left_out(
    sqlite_store: tuple[Adapter, RawWrite],
) -> None:
    # json raises RecursionError, not ValueError, past its nesting limit: one such row made
    # workers() raise, so `queuebox status` and the dashboard lost every worker.
    adapter, write = sqlite_store
    assert isinstance(adapter, SQLiteAdapter)
    now = adapter.now()
    adapter.beat(WorkerInfo("good", "alpha", 1, None, 1, "0.1.0", now), ttl=30)
    write(
        "INSERT INTO queuebox_workers (id, host, record, beat_at, ttl) "
        "SELECT 'deep', 'beta', :record, beat_at, ttl FROM queuebox_workers WHERE id = 'good'",
        {"record": "[" * 5000 + "]" * 5000},
    )
    assert [worker.id for worker in adapter.workers()] == ["good"]


@pytest.mark.parametrize("counts", ["not json", "[1, 2", "[" * 5000, '["x"]', "{}"])
def test_a_minute_row_written_past_queuebox_is_left_out(
    sqlite_store: tuple[Adapter, RawWrite], counts: str
) -> None:
    # stats() raised on it (ValueError, RecursionError...), so the dashboard's overview,
    # its charts and /metrics answered 500 for one bad row.
    adapter, write = sqlite_store
    assert isinstance(adapter, SQLiteAdapter)
    minute = adapter.now().replace(second=0, microsecond=0)
    adapter.add_stats([MinuteStats("q", "Good", minute, succeeded=3)])
    write(
        "INSERT INTO queuebox_minutes SELECT minute, queue, 'Bad', 1, 0, 0, 0, :counts, 0.0 "
        "FROM queuebox_minutes WHERE name = 'Good'",
        {"counts": counts},
    )
    since = minute - timedelta(minutes=5)
    assert [(t.name, t.succeeded) for t in adapter.stats(since=since)] == [("Good", 3)]


def test_now_is_utc_whatever_the_session_time_zone(postgres_url: str) -> None:
    schema = f"qb_test_{uuid.uuid4().hex[:12]}"
    zone = "options=-c%20TimeZone%3DPacific/Chatham"  # UTC+12:45 or +13:45
    odd = f"{postgres_url}{'&' if '?' in postgres_url else '?'}{zone}"
    try:
        with closing(PostgresAdapter(odd, schema=schema)) as adapter:
            now = adapter.now()
            assert now.utcoffset() == timedelta(0)
            assert abs(now.timestamp() - time.time()) < 2
            record = adapter.schedule_one(new_job(delay=60))
            assert record.run_at.utcoffset() == timedelta(0)
            assert abs((record.run_at - now).total_seconds() - 60) < 2
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as raw:
            raw.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _refusing_server(message: str) -> tuple[int, threading.Thread]:
    """A loopback socket that answers a PostgreSQL client's start-up as a server refusing its
    password does (SQLSTATE 28P01), so the test needs no server with password auth."""
    listener = socket.create_server(("127.0.0.1", 0))
    port: int = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            listener.settimeout(10)
            conn, _ = listener.accept()
            with conn:
                while True:
                    size = struct.unpack("!I", conn.recv(4))[0]
                    code = struct.unpack("!I", conn.recv(size - 4)[:4])[0]
                    if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: no
                        conn.sendall(b"N")
                        continue
                    fields = b"SFATAL\0VFATAL\0C28P01\0M" + message.encode() + b"\0\0"
                    conn.sendall(b"E" + struct.pack("!I", len(fields) + 4) + fields)
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


def test_a_wrong_password_is_a_configuration_error_that_hides_it() -> None:
    port, server = _refusing_server('password authentication failed for user "app"')
    adapter = PostgresAdapter(f"postgresql://app:s3cret@127.0.0.1:{port}/db?sslmode=disable")
    with pytest.raises(ConfigurationError, match="refused the credentials") as caught:
        adapter.now()
    server.join(10)
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value)
    assert not isinstance(caught.value, StorageUnavailable)
