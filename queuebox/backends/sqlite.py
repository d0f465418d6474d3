"""The SQLite store: one database file shared by every worker process on one machine.

WAL journal, a busy timeout, ``BEGIN IMMEDIATE`` for every write and one
``UPDATE ... RETURNING`` statement per claim; every query lives in ``sql/sqlite.sql``.
``docs/sqlite.md`` describes the URL forms, the schema and the claim index.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from queuebox.backends.base import (
    Adapter,
    Capabilities,
    JobRecord,
    JobState,
    NewJob,
    QueueCounts,
    RecurringStore,
    record_from_row,
)
from queuebox.backends.sql import load_queries
from queuebox.errors import ConfigurationError, InvalidSchedule, StorageUnavailable

__all__ = ["SCHEMA_VERSION", "SQLiteAdapter"]

#: ``PRAGMA user_version`` of the newest schema this module knows how to build.
SCHEMA_VERSION = 1

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_ROWID = 2**63 - 1
# A large schedule() is split into several transactions so that workers are not kept
# waiting on the write lock for the whole batch; each job is still stored atomically.
_SCHEDULE_CHUNK = 500
# How often wait_for_work looks for commits by other connections, in seconds.
_CHANGE_POLL = 0.1

# Connections inherited through fork() are never used or closed in the child (SQLite forbids
# it, and closing one could checkpoint or unlock the parent's database); pinning them here
# keeps the garbage collector from closing them.
_inherited: list[sqlite3.Connection] = []

_NOT_STORAGE_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    sqlite3.NotSupportedError,
)


def _sql(name: str) -> str:
    return load_queries("sqlite")[name]


class SQLiteAdapter(Adapter, RecurringStore):
    """Jobs in the table ``queuebox_jobs`` of one SQLite database file."""

    schemes = ("sqlite",)
    # No cross-process notification exists in SQLite: wait_for_work sleeps until the next
    # job or lock is due, and a job enqueued by another process waits for the next poll.
    capabilities = Capabilities(wakeup=False, multiprocess=True, keep_completed=True, unique=True)

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        raw = os.fspath(path)
        if raw in ("", ":memory:") or raw.startswith("file:"):
            raise ConfigurationError(
                f"SQLite path {raw!r} is not a database file: give a file path such as "
                "sqlite:///queuebox.db (use memory:// for a store that lives in one process)"
            )
        # Resolved now, so that a later chdir() does not move the store.
        self.path = Path(raw).expanduser().absolute()
        if not self.path.parent.is_dir():
            raise ConfigurationError(
                f"cannot open the SQLite store {self.path}: the directory {self.path.parent} "
                "does not exist; create it first (queuebox does not create directories)"
            )
        if self.path.is_dir():
            raise ConfigurationError(f"the SQLite path {self.path} is a directory, not a file")
        if busy_timeout < 0:
            raise ConfigurationError(f"busy_timeout must be >= 0 seconds, not {busy_timeout}")
        self.busy_timeout = float(busy_timeout)
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._generation = 0
        self._schema_ready = False

    @classmethod
    def from_url(cls, url: str) -> SQLiteAdapter:
        """``sqlite:///relative.db`` (from the current directory) or ``sqlite:////abs.db``.

        The query string may set ``busy_timeout`` in seconds.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "sqlite":
            raise ConfigurationError(f"{url!r} is not a sqlite:// URL")
        if parts.netloc:
            raise ConfigurationError(
                f"{url!r} names a host ({parts.netloc!r}); SQLite stores are local files: "
                "write sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        path = unquote(parts.path[1:])  # the path after the third slash
        if not path:
            raise ConfigurationError(
                f"{url!r} has no database path: write sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db"
            )
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(options) - {"busy_timeout"})
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {', '.join(unknown)} in {url!r}; known: busy_timeout"
            )
        try:
            busy_timeout = float(options.get("busy_timeout", "30"))
        except ValueError:
            raise ConfigurationError(
                f"busy_timeout in {url!r} must be a number of seconds"
            ) from None
        return cls(path, busy_timeout=busy_timeout)

    def __repr__(self) -> str:
        return f"SQLiteAdapter({str(self.path)!r})"

    # -- connections ------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (and again after fork or close)."""
        if self._pid != os.getpid():
            # The parent's connections and lock belong to the parent; start afresh.
            _inherited.extend(self._connections)
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._local = threading.local()
            self._connections = []
        held: tuple[int, sqlite3.Connection] | None = getattr(self._local, "held", None)
        if held is not None and held[0] == self._generation:
            return held[1]
        connection = self._open()
        with self._lock:
            self._connections.append(connection)
            self._local.held = (self._generation, connection)
        return connection

    def _open(self) -> sqlite3.Connection:
        try:
            # isolation_level=None: the module must not open deferred transactions on its
            # own; every write is wrapped in an explicit BEGIN IMMEDIATE. check_same_thread
            # is off only so that close() may close other threads' connections.
            connection = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StorageUnavailable(
                f"cannot open the SQLite store {self.path}: {exc}; check that the file is "
                "a SQLite database and that its directory is writable"
            ) from exc
        connection.row_factory = sqlite3.Row
        try:
            with self._storage_errors():
                self._set_up(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _set_up(self, connection: sqlite3.Connection) -> None:
        """Switch to WAL and create the schema, retrying while another process does so.

        Switching a new file to WAL needs an exclusive lock, and SQLite reports a clash
        there as "database is locked" at once instead of calling the busy handler; so
        several processes opening a new store together retry here, up to busy_timeout.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                connection.execute(_sql("enable_wal")).fetchall()
                if not self._schema_ready:
                    self._migrate(connection)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
            else:
                return

    @contextlib.contextmanager
    def _storage_errors(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.OperationalError, sqlite3.DatabaseError) as exc:
            # Errors of the caller's data or of our SQL are bugs, not an unreachable store.
            if isinstance(exc, _NOT_STORAGE_ERRORS):
                raise
            hint = ""
            if "locked" in str(exc) or "busy" in str(exc):
                hint = (
                    f" after waiting busy_timeout={self.busy_timeout}s for the write lock; "
                    "a long transaction holds it, or raise busy_timeout"
                )
            raise StorageUnavailable(f"the SQLite store {self.path} failed: {exc}{hint}") from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the write lock from its first statement.

        A deferred transaction that reads, then writes, fails at once with "database is
        locked" when another writer got in between; BEGIN IMMEDIATE waits for the lock
        (up to busy_timeout) before reading anything instead.
        """
        connection = self._connection()
        with self._storage_errors():
            connection.execute(_sql("begin_immediate"))
            try:
                yield connection
                connection.execute(_sql("commit"))
            except BaseException:
                if connection.in_transaction:
                    connection.execute(_sql("rollback"))
                raise

    def _read(self, query: str, params: dict[str, Any]) -> list[sqlite3.Row]:
        connection = self._connection()
        with self._storage_errors():
            return connection.execute(query, params).fetchall()

    def migrate(self) -> None:
        connection = self._connection()
        with self._storage_errors():
            self._migrate(connection)

    def _migrate(self, connection: sqlite3.Connection) -> None:
        version = connection.execute(_sql("schema_version")).fetchone()[0]
        if version < SCHEMA_VERSION:
            connection.execute(_sql("begin_immediate"))
            try:
                # Read again under the write lock: another process may have migrated.
                version = connection.execute(_sql("schema_version")).fetchone()[0]
                if version < 1:
                    connection.execute(_sql("create_jobs_table"))
                    connection.execute(_sql("create_waiting_index"))
                    connection.execute(_sql("create_locks_index"))
                    connection.execute(_sql("create_unique_index"))
                    connection.execute(_sql("create_recurring_table"))
                    connection.execute(_sql("set_schema_version_1"))
                connection.execute(_sql("commit"))
            except BaseException:
                if connection.in_transaction:
                    connection.execute(_sql("rollback"))
                raise
        if version > SCHEMA_VERSION:
            raise ConfigurationError(
                f"the SQLite store {self.path} has schema version {version}, newer than "
                f"this queuebox understands ({SCHEMA_VERSION}); upgrade queuebox"
            )
        self._schema_ready = True

    def close(self) -> None:
        if self._pid != os.getpid():
            return  # nothing of ours to close; the parent's connections stay pinned
        with self._lock:
            connections, self._connections = self._connections, []
            self._generation += 1
        for connection in connections:
            connection.close()

    # -- time -------------------------------------------------------------------------------

    def now(self) -> datetime:
        return _datetime(self._read(_sql("now"), {})[0]["now"])

    # -- scheduling -------------------------------------------------------------------------

    def schedule(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        params = [_insert_params(job) for job in jobs]
        records: list[JobRecord] = []
        for start in range(0, len(params), _SCHEDULE_CHUNK):
            with self._write() as connection:
                for job in params[start : start + _SCHEDULE_CHUNK]:
                    records.append(_insert(connection, job)[0])
        return records

    def schedule_tick(
        self, key: str, tick: datetime, job: NewJob, *, store: bool = True
    ) -> JobRecord | None:
        tick_us = _micros_of(tick)
        with self._write() as connection:
            moved = connection.execute(_sql("record_tick"), {"key": key, "tick": tick_us})
            if moved.fetchone() is None or not store:
                return None
            record, stored = _insert(connection, _insert_params(job))
            return record if stored else None

    def recurring_ticks(self) -> dict[str, datetime]:
        rows = self._read(_sql("recurring_ticks"), {})
        return {row["key"]: _datetime(row["last_tick"]) for row in rows}

    # -- execution --------------------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        queues: Sequence[str] | None,
        *,
        limit: int = 1,
        lease: float,
    ) -> list[JobRecord]:
        if limit < 1:
            return []
        if queues is not None and not queues:
            return []
        params = {
            "worker_id": worker_id,
            "queues": None if queues is None else json.dumps(list(dict.fromkeys(queues))),
            "limit": limit,
            "lease_us": _micros(lease),
            "nonce": secrets.token_hex(16),
        }
        with self._write() as connection:
            rows = connection.execute(_sql("claim_jobs"), params).fetchall()
        # RETURNING gives rows in no promised order.
        rows.sort(key=lambda row: (row["priority"], row["run_at"], row["id"]))
        return [_record(row, with_token=True) for row in rows]

    def _owned_write(self, query: str, job_id: str, lock_token: str, **extra: Any) -> bool:
        row_id = _row_id(job_id)
        if row_id is None or not lock_token:
            return False
        with self._write() as connection:
            cursor = connection.execute(query, {"id": row_id, "token": lock_token, **extra})
            return cursor.rowcount == 1

    def complete(self, job_id: str, lock_token: str, *, keep: bool = False) -> bool:
        query = _sql("complete_keep") if keep else _sql("delete_locked_job")
        return self._owned_write(query, job_id, lock_token)

    def complete_many(self, acks: Sequence[tuple[str, str]], *, keep: bool = False) -> list[bool]:
        if not acks:
            return []
        query = _sql("complete_keep") if keep else _sql("delete_locked_job")
        results = []
        with self._write() as connection:
            for job_id, lock_token in acks:
                row_id = _row_id(job_id)
                if row_id is None or not lock_token:
                    results.append(False)
                    continue
                cursor = connection.execute(query, {"id": row_id, "token": lock_token})
                results.append(cursor.rowcount == 1)
        return results

    def reschedule(self, job_id: str, lock_token: str, *, delay: float, error: str) -> bool:
        return self._owned_write(
            _sql("reschedule"), job_id, lock_token, delay_us=_micros(delay), error=error
        )

    def fail(self, job_id: str, lock_token: str, *, error: str, keep: bool = True) -> bool:
        if not keep:
            return self._owned_write(_sql("delete_locked_job"), job_id, lock_token)
        return self._owned_write(_sql("fail_keep"), job_id, lock_token, error=error)

    def release(self, job_id: str, lock_token: str) -> bool:
        return self._owned_write(_sql("release"), job_id, lock_token)

    def extend(self, job_id: str, lock_token: str, *, lease: float) -> bool:
        return self._owned_write(_sql("extend"), job_id, lock_token, lease_us=_micros(lease))

    def wait_for_work(self, queues: Sequence[str] | None, timeout: float) -> None:
        """Sleep until the first job or lock of ``queues`` is due, or ``timeout`` passes.

        SQLite cannot notify another process, but ``PRAGMA data_version`` changes whenever
        another connection commits and costs no disk read; polling it lets a job that
        another process enqueues end the wait within ``_CHANGE_POLL`` seconds.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        if queues is not None and not queues:
            threading.Event().wait(max(0.0, timeout))
            return
        params = {"queues": None if queues is None else json.dumps(list(queues))}
        seen_version = None
        due: float | None = None
        while True:
            version = self._read(_sql("data_version"), {})[0][0]
            if version != seen_version:
                seen_version = version
                wait_us = self._read(_sql("next_due"), params)[0]["wait_us"]
                due = None if wait_us is None else time.monotonic() + wait_us / 1_000_000
            remaining = deadline - time.monotonic()
            if due is not None:
                remaining = min(remaining, due - time.monotonic())
            if remaining <= 0:
                return
            threading.Event().wait(min(remaining, _CHANGE_POLL))

    # -- inspection and administration ------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        row_id = _row_id(job_id)
        if row_id is None:
            return None
        rows = self._read(_sql("get_job"), {"id": row_id})
        return _record(rows[0]) if rows else None

    def list_jobs(
        self,
        *,
        queues: Sequence[str] | None = None,
        states: Sequence[JobState] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        params = {
            "queues": None if queues is None else json.dumps(list(queues)),
            "states": None if states is None else json.dumps([s.value for s in states]),
            "limit": max(0, limit),
            "offset": max(0, offset),
        }
        return [_record(row) for row in self._read(_sql("list_jobs"), params)]

    def counts(self) -> list[QueueCounts]:
        tally: dict[str, dict[str, int]] = {}
        for row in self._read(_sql("counts"), {}):
            tally.setdefault(row["queue"], {})[row["state"]] = row["n"]
        return [QueueCounts(queue=queue, **tally[queue]) for queue in sorted(tally)]

    def retry(self, job_id: str) -> bool:
        return self._write_by_id(_sql("retry"), job_id)

    def delete(self, job_id: str) -> bool:
        return self._write_by_id(_sql("delete_job"), job_id)

    def _write_by_id(self, query: str, job_id: str) -> bool:
        row_id = _row_id(job_id)
        if row_id is None:
            return False
        with self._write() as connection:
            return connection.execute(query, {"id": row_id}).rowcount == 1

    def clear(self, queues: Sequence[str] | None = None) -> int:
        with self._write() as connection:
            if queues is None:
                cursor = connection.execute(_sql("clear_all"))
            else:
                cursor = connection.execute(
                    _sql("clear_queues"), {"queues": json.dumps(list(queues))}
                )
            return cursor.rowcount


# -- conversions -----------------------------------------------------------------------------


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _datetime(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _row_id(job_id: str) -> int | None:
    """The rowid a job id names, or ``None`` for anything that is not a plain decimal id."""
    if not isinstance(job_id, str) or not (job_id.isascii() and job_id.isdigit()):
        return None
    row_id = int(job_id)
    return row_id if row_id <= _MAX_ROWID else None


def _insert(connection: sqlite3.Connection, params: dict[str, Any]) -> tuple[JobRecord, bool]:
    """Insert one job inside the caller's transaction; ``(record, stored)``.

    When the job's unique key is held, nothing is stored and the holder comes back.
    """
    row = connection.execute(_sql("insert_job"), params).fetchone()
    if row is not None:
        return _record(row), True
    holder = connection.execute(_sql("get_job_by_unique_key"), params).fetchone()
    return _record(holder), False


def _micros_of(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise InvalidSchedule(f"{moment.isoformat()} has no time zone; pass an aware datetime")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _insert_params(job: NewJob) -> dict[str, Any]:
    return {
        "name": job.name,
        "handler": job.handler,
        "queue": job.queue,
        "priority": job.priority,
        "run_at": None if job.run_at is None else _micros_of(job.run_at),
        "delay_us": _micros(job.delay),
        "unique_key": job.unique_key,
    }


def _record(row: sqlite3.Row, *, with_token: bool = False) -> JobRecord:
    return record_from_row(row, _datetime, with_token=with_token)
