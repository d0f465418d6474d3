"""The SQLite store: one database file shared by every worker process on one machine.

A dialect of the SQL base (``queuebox.backends.sql.SQLStore``): one connection per thread,
WAL journal, a busy timeout, ``BEGIN IMMEDIATE`` for every write and one
``UPDATE ... RETURNING`` statement per claim; every query lives in ``sql/sqlite.sql``.
``docs/sqlite.md`` describes the URL forms, the schema and the claim index.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

from queuebox.backends.arguments import check_seconds
from queuebox.backends.base import Capabilities, NewJob, Row
from queuebox.backends.sql import (
    ChangeWatch,
    SQLCancellation,
    SQLPipelinedClaims,
    SQLRecurring,
    SQLStore,
)
from queuebox.backends.sql.file_watch import watch_database_file
from queuebox.backends.sql.flow import SQLFlowControl
from queuebox.backends.sql.monitor import SQLMonitor
from queuebox.errors import ConfigurationError, QueueboxError, StorageUnavailable

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SQLiteAdapter"]

MIGRATIONS: tuple[str, ...] = (
    "migrate_v1",
    "migrate_v2",
    "migrate_v3",
    "migrate_v4",
    "migrate_v5",
)
#: ``PRAGMA user_version`` of the newest schema this module knows how to build.
SCHEMA_VERSION = len(MIGRATIONS)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
#: From this many columns on, ``_fetch`` hands rows on as dicts (see there).
_WIDE_ROW = 8


@functools.lru_cache(maxsize=512, typed=True)  # typed: True is not the integer 1
def _moment_of(value: Any) -> datetime:
    """A stored time (integer microseconds since 1970) as an aware UTC datetime."""
    if type(value) is not int:
        raise TypeError(f"{value!r} is not integer microseconds")
    return _EPOCH + value * _MICROSECOND


# Errors of the caller's data or of our SQL are bugs, not an unreachable store.
_NOT_STORAGE_ERRORS = (
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.DataError,
    sqlite3.NotSupportedError,
    sqlite3.InterfaceError,
)


def _lenient_text(data: bytes) -> str:
    """Text that is not UTF-8, with its bytes kept as surrogate escapes, so that the record
    of that one row says so (``sql.rows``) instead of the whole read failing."""
    return data.decode("utf-8", "surrogateescape")


class SQLiteAdapter(
    SQLMonitor, SQLFlowControl, SQLPipelinedClaims, SQLRecurring, SQLCancellation, SQLStore
):
    """Jobs in the table ``queuebox_jobs`` of one SQLite database file."""

    schemes = ("sqlite",)
    # No cross-process notification exists in SQLite: wait_for_work sleeps until the next
    # job or lock is due, polling PRAGMA data_version to notice other processes' commits.
    capabilities = Capabilities(wakeup=False, multiprocess=True, keep_completed=True, unique=True)

    query_file: ClassVar[str] = "sqlite"
    driver_errors: ClassVar[tuple[type[Exception], ...]] = (sqlite3.Error,)
    migrations = MIGRATIONS
    connection_per_thread = True
    writes_in_transaction = True
    # One statement per 500 jobs (a JSON array of rows, see _batch_params), one transaction
    # each, so that workers are never kept from the write lock for long.
    insert_batch = 500
    schedule_chunk = 500
    lone_inserts = True
    fresh_inserts = True
    reconnect_backoff = None

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        if not isinstance(path, (str, os.PathLike)) or isinstance(os.fspath(path), bytes):
            raise ConfigurationError(
                f"SQLiteAdapter: path must be a file path (str or pathlib.Path), "
                f"not {type(path).__name__}"
            )
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
        self.busy_timeout = check_seconds("SQLiteAdapter", "busy_timeout", busy_timeout)
        super().__init__()

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

    # -- the dialect surface -----------------------------------------------------------------

    def _new_watch(self) -> ChangeWatch:
        # inotify on the database's folder wakes an idle worker on another process's commit
        # (sql/file_watch.py); PRAGMA data_version still decides whether anything changed.
        return watch_database_file(self.path, lambda: self._read("changes")[0])

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: the module must not open deferred transactions on its own;
        # every write is wrapped in an explicit BEGIN IMMEDIATE. check_same_thread is off
        # only so that close() may close other threads' connections.
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        connection.row_factory = sqlite3.Row  # see _fetch for the rows of whole jobs
        # The claim's CTEs (the queue and key walks, their DISTINCT and UNION) build small
        # temporary b-trees; by default each is a temporary file that SQLite opens and
        # unlinks, which made a flow-controlled claim cost 480 us of CPU instead of 146.
        connection.execute("PRAGMA temp_store = MEMORY")
        return connection

    def _prepare_connection(self, connection: Any) -> None:
        """Switch to WAL and create the schema, retrying while another process does so.

        Switching a new file to WAL needs an exclusive lock, and SQLite reports a clash
        there as "database is locked" at once instead of calling the busy handler; so
        several processes opening a new store together retry here, up to busy_timeout.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                super()._prepare_connection(connection)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
            else:
                return

    def _failure(self, exc: Exception) -> QueueboxError | None:
        if isinstance(exc, _NOT_STORAGE_ERRORS):
            return None
        hint = ""
        if "locked" in str(exc) or "busy" in str(exc):
            hint = (
                f" after waiting busy_timeout={self.busy_timeout}s for the write lock; "
                "a long transaction holds it, or raise busy_timeout"
            )
        elif "unable to open" in str(exc):
            hint = "; check that the file is a SQLite database and that its directory is writable"
        return StorageUnavailable(f"the SQLite store {self.path} failed: {exc}{hint}")

    def _fetch(self, cursor: Any) -> list[Row]:
        """Every row. sqlite3 raises OperationalError ("Could not decode to UTF-8") for a row
        with text that is not UTF-8; ``extend`` keeps the rows read before it, and the
        failed row is still the cursor's current one, so it is read again leniently and the
        rest follow.

        A row of ``_WIDE_ROW`` columns or more (a whole job: 22) is handed on as a dict.
        ``sqlite3.Row`` finds a column by comparing its name with every column before it,
        so reading all of a job's columns by name cost about 13,000 instructions per row;
        a dict costs a fixed few thousand to build, which a row of five columns (what an
        insert returns) would pay for nothing."""
        rows: list[Any] = []
        while True:
            try:
                rows.extend(cursor)
                break
            except sqlite3.OperationalError as exc:
                if "decode" not in str(exc):
                    raise
                cursor.connection.text_factory = _lenient_text
                try:
                    row = cursor.fetchone()
                finally:
                    cursor.connection.text_factory = str
                if row is None:
                    break
                rows.append(row)
        if not rows or len(cursor.description) < _WIDE_ROW:
            return rows
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in rows]

    # A row's times as datetimes; the rows of one claim share their updated_at, locked_at
    # and lock_expires_at (one statement's clock), and often their run_at and created_at (one
    # batch), so most conversions of a batch are hits.
    _moment = staticmethod(_moment_of)

    def _time_param(self, moment: datetime) -> int:
        return (moment - _EPOCH) // _MICROSECOND

    def _seconds_param(self, seconds: float) -> int:
        return round(seconds * 1_000_000)

    def _array_param(self, values: list[Any]) -> str:
        return json.dumps(values)

    def _batch_params(self, jobs: Sequence[NewJob]) -> dict[str, Any]:
        # One JSON array of rows that the insert reads with json_each: sqlite3 binds no
        # arrays, and one statement per job cost about three times as much (Python's
        # execute and the statement's reset per row). ensure_ascii=False: text that
        # cannot be stored (lone surrogates) fails at the bind, as it does for one job.
        rows = [self._job_values(job) for job in jobs]
        return {"jobs": json.dumps(rows, ensure_ascii=False)}

    def _bind(self, params: dict[str, Any]) -> dict[str, Any]:
        # Pairs of arrays become one array of pairs (see sqlite.sql): json_each cannot zip.
        if "tokens" in params:  # the batched writes read (id, token) pairs
            pairs = list(zip(params["ids"], params["tokens"], strict=True))
            params = {**params, "acks": json.dumps(pairs)}
        if "unique_keys" in params:  # unique_holders reads (queue, unique_key) pairs
            pairs = list(zip(params["queues"], params["unique_keys"], strict=True))
            params = {**params, "held": json.dumps(pairs, ensure_ascii=False)}
        return super()._bind(params)

    def _record_schema_version(self, connection: Any, version: int) -> None:
        connection.execute(self._texts["record_version"].format(version=int(version)))
