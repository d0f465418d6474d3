"""The PostgreSQL store, on psycopg 3: ``postgresql://`` and ``postgres://`` URLs.

A dialect of the SQL base (``queuebox.backends.sql.SQLStore``). One autocommit connection per
adapter serves every call behind a lock (a worker's heartbeat thread calls ``extend_many``
while its main thread claims and completes); a second connection, opened by the first
``wait_for_work``, only LISTENs. Each claim is one call of the PL/pgSQL function
``<table>_claim`` (schema version 7: its plans are kept for the session), an ``UPDATE``
over a ``SELECT ... FOR UPDATE SKIP LOCKED`` (of ``<table>_claim_limited`` while jobs with
a flow-control key exist: ``postgres_flow.py``); a lone job is one ``INSERT ... VALUES`` in
autocommit (its NOTIFY in the same statement), batches take 1,000 jobs per statement
through ``unnest``; all SQL lives in ``sql/postgres.sql``. ``aschedule`` runs the same
statements on one ``AsyncConnection`` per event loop (``postgres_async.py``). When the
server drops a connection, the call in flight raises ``StorageUnavailable`` and the next
call opens a new one; a forked child never touches its parent's connections. See
``docs/postgres.md``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from queuebox.backends.arguments import check_flag, check_text
from queuebox.backends.base import (
    AsyncScheduling,
    Capabilities,
    JobRecord,
    NewJob,
    Row,
    TransactionalEnqueue,
)
from queuebox.backends.postgres_async import AsyncConnections
from queuebox.backends.postgres_flow import PostgresFlowControl
from queuebox.backends.postgres_support import (
    URL_OPTIONS,
    NotifyWatch,
    check_identifier,
    close_quietly,
    display_url,
    function_body,
    identifier,
    lenient_rows,
    parse_flag,
    short_channel,
    split_url,
    usable,
)
from queuebox.backends.sql import ChangeWatch, SQLCancellation, SQLRecurring, SQLStore
from queuebox.backends.sql.inserts import Stored, arun_plan, one_write, run_plan
from queuebox.backends.sql.monitor import PostgresMonitor
from queuebox.errors import (
    ConfigurationError,
    PayloadError,
    QueueboxError,
    StorageUnavailable,
    ValidationError,
    scrub,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "URL_OPTIONS", "PostgresAdapter"]

#: Named queries that build each schema version, in order: the position is the version.
MIGRATIONS = (
    "migrate_v1",
    "migrate_v2",
    "migrate_v3",
    "migrate_v4",
    "migrate_v5",
    "migrate_v6",
    "migrate_v7",
)
SCHEMA_VERSION = len(MIGRATIONS)
DEFAULT_TABLE = "queuebox_jobs"
#: Attempts of a schedule transaction that PostgreSQL aborted to break a deadlock.
_CONFLICT_ATTEMPTS = 3
#: The adapter's own connections with ``prepare=on``: psycopg prepares no statement by
#: itself (it would after this many runs), only those executed with ``prepare=True``.
_ONLY_WHEN_ASKED = 2**31 - 1
#: Migrations that create a PL/pgSQL function from the fragments of bound statements: their
#: ``%(name)s`` parameters become the function's arguments (``function_body``).
_FUNCTION_MIGRATIONS = frozenset({"migrate_v6", "migrate_v7"})
_log = logging.getLogger("queuebox.backends.sql")


class PostgresAdapter(
    PostgresMonitor,
    PostgresFlowControl,
    SQLRecurring,
    SQLCancellation,
    SQLStore,
    TransactionalEnqueue,
    AsyncScheduling,
):
    """Jobs in one PostgreSQL table, claimed with ``FOR UPDATE SKIP LOCKED``.

    ``url`` is a ``postgresql://`` URL (or a libpq ``key=value`` string). Its query
    parameters ``schema``, ``table``, ``wakeup`` and ``prepare`` configure queuebox and are
    removed before the rest reaches libpq; the keyword arguments of the same names win over
    them. ``prepare`` (off by default) prepares the insert statements on the server, once
    per connection: not through PgBouncer before 1.21 in transaction mode.
    """

    schemes = ("postgresql", "postgres")
    capabilities = Capabilities(wakeup=True, unique=True)

    query_file: ClassVar[str] = "postgres"
    #: The plain claim as a statement, to compare the function with (benchmarks).
    sql_queries: ClassVar[frozenset[str]] = frozenset({"claim_statement"})
    driver_errors: ClassVar[tuple[type[Exception], ...]] = (psycopg.Error,)
    migrations = MIGRATIONS
    insert_batch = 1000
    lone_inserts = True  # a request's enqueue: one INSERT ... VALUES of scalars
    fresh_inserts = True

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        table: str | None = None,
        wakeup: bool | None = None,
        prepare: bool | None = None,
        application_name: str = "queuebox",
        connect_timeout: int = 10,
    ) -> None:
        owner = "PostgresAdapter"
        check_text(owner, "url", url)
        check_text(owner, "schema", schema, optional=True)
        check_text(owner, "table", table, optional=True)
        check_flag(owner, "wakeup", wakeup)
        check_flag(owner, "prepare", prepare)
        check_text(owner, "application_name", application_name)
        if isinstance(connect_timeout, bool) or not isinstance(connect_timeout, int):
            raise ConfigurationError(f"{owner}: connect_timeout must be whole seconds (an int)")
        if connect_timeout < 0:
            raise ConfigurationError(f"{owner}: connect_timeout must be >= 0 (0: wait forever)")
        conninfo, options = split_url(url)
        self.schema = schema if schema is not None else options.get("schema") or None
        self.table = table if table is not None else options.get("table") or DEFAULT_TABLE
        check_identifier("schema", self.schema, 63)
        check_identifier("table", self.table, 48)
        self.wakeup = wakeup if wakeup is not None else parse_flag(options.get("wakeup", "on"))
        if not self.wakeup:
            self.capabilities = Capabilities(wakeup=False, unique=True)
        self.prepare = (
            prepare if prepare is not None else parse_flag(options.get("prepare", "off"), "prepare")
        )
        self._threshold = _ONLY_WHEN_ASKED if self.prepare else None
        try:
            given = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(f"invalid PostgreSQL URL {display_url(url)}: {exc}") from None
        defaults: dict[str, Any] = {
            "application_name": application_name,
            "connect_timeout": connect_timeout,
        }
        self._conninfo = make_conninfo(
            conninfo, **{key: value for key, value in defaults.items() if key not in given}
        )
        self._url = display_url(url)
        qualified = f"{self.schema}.{self.table}" if self.schema else self.table
        self.channel = qualified if len(qualified.encode()) <= 63 else short_channel(qualified)
        self._names = self._identifiers(qualified)
        self._composed: dict[tuple[str, str], bytes] = {}
        self._async_connections = AsyncConnections(self._aconnect, alive=usable)
        super().__init__()

    @classmethod
    def from_url(cls, url: str) -> PostgresAdapter:
        return cls(url)

    def __repr__(self) -> str:
        return f"PostgresAdapter({self._url!r}, schema={self.schema!r}, table={self.table!r})"

    @property
    def conninfo(self) -> str:
        """What reaches libpq: the URL without queuebox's options, with its defaults."""
        return self._conninfo

    @property
    def listening(self) -> bool:
        """Whether a LISTEN connection is open (``wait_for_work`` opens it)."""
        watch = self._watch
        return isinstance(watch, NotifyWatch) and watch.listening

    def _identifiers(self, qualified: str) -> dict[str, sql.Composable]:
        table = self.table
        return {
            "jobs": identifier(self.schema, table),
            "migrations": identifier(self.schema, f"{table}_migrations"),
            "recurring": identifier(self.schema, f"{table}_recurring"),
            "schema_literal": sql.Literal(self.schema),
            "migrations_literal": sql.Literal(f"{table}_migrations"),
            "migrate_key": sql.Literal(f"queuebox.migrate:{qualified}"),
            "due_index": sql.Identifier(f"{table}_due_idx"),
            "next_index": sql.Identifier(f"{table}_next_idx"),
            "queue_index": sql.Identifier(f"{table}_queue_idx"),
            "unique_index": sql.Identifier(f"{table}_unique_idx"),
            "next_statistics": identifier(self.schema, f"{table}_next_stats"),
            # DROP INDEX names an index with its schema; CREATE INDEX puts it in the table's.
            "due_index_qualified": identifier(self.schema, f"{table}_due_idx"),
            "next_index_qualified": identifier(self.schema, f"{table}_next_idx"),
            "queue_index_qualified": identifier(self.schema, f"{table}_queue_idx"),
            # Flow control (postgres_flow.py); every suffix keeps a 48-byte table's names
            # within PostgreSQL's 63 bytes.
            "paused": identifier(self.schema, f"{table}_paused"),
            "starts": identifier(self.schema, f"{table}_starts"),
            "keyed_index": sql.Identifier(f"{table}_keyed_idx"),
            "running_index": sql.Identifier(f"{table}_running_idx"),
            "starts_index": sql.Identifier(f"{table}_starts_idx"),
            "lock_space": sql.Literal(f"queuebox.limit:{qualified}"),
            "claim_function": identifier(self.schema, f"{table}_claim_limited"),
            "plain_claim_function": identifier(self.schema, f"{table}_claim"),
            # The job search's indexes of the states few jobs are in (sql/monitor.py).
            "failed_index": sql.Identifier(f"{table}_failed_idx"),
            "completed_index": sql.Identifier(f"{table}_completed_idx"),
            "cancelled_index": sql.Identifier(f"{table}_cancelled_idx"),
            "channel": sql.Literal(self.channel),
            "channel_name": sql.Identifier(self.channel),
        }

    def query(self, name: str) -> sql.Composed:
        """A named query with this adapter's identifiers in (for EXPLAIN in tests and docs)."""
        composed: sql.Composed = self._queries[name]
        return composed

    # -- the dialect surface -----------------------------------------------------------------

    def _prepare(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(**self._names)

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self._conninfo, **self._connection_options())
        except psycopg.Error as exc:
            error, cause = self._connect_failure(exc)
            raise error from cause

    def _connection_options(self) -> dict[str, Any]:
        """How the adapter's own connections (sync and asyncio) are opened: autocommit, rows
        as dicts, statements prepared only where ``prepare=on`` asks."""
        return {"autocommit": True, "prepare_threshold": self._threshold, "row_factory": dict_row}

    def _connect_failure(self, exc: psycopg.Error) -> tuple[QueueboxError, BaseException | None]:
        """The error to raise for a failed connection attempt, and its cause (none for
        refused credentials: nothing of the driver's text is shown beyond the scrubbed line)."""
        if not isinstance(exc, psycopg.OperationalError):
            return ConfigurationError(f"cannot connect to {self._url}: {exc}"), exc
        if _refused_credentials(exc):
            return ConfigurationError(
                f"PostgreSQL refused the credentials of {self._url}: "
                f"{scrub(_first_line(exc), self._conninfo)}; check the user name and password"
            ), None
        return self._unavailable("cannot connect to PostgreSQL", exc), exc

    def _unavailable(self, what: str, exc: BaseException) -> StorageUnavailable:
        return StorageUnavailable(
            f"{what}: {scrub(_first_line(exc), self._conninfo)}", url=self._url
        )

    def _failure(self, exc: Exception) -> QueueboxError | None:
        if isinstance(exc, psycopg.DataError):
            # Only a payload written past the core can get here (it escapes NUL as
            # \u0000): say what the store refused rather than leak a driver error.
            return PayloadError(f"PostgreSQL refused the job's data: {exc}")
        if isinstance(exc, psycopg.OperationalError):
            return self._unavailable("PostgreSQL is unavailable", exc)
        return None

    def _alive(self, connection: Any) -> bool:
        return usable(connection)

    def _broken(self, connection: Any, exc: Exception) -> bool:
        return bool(connection.closed)

    def _close_quietly(self, connection: Any) -> None:
        close_quietly(connection)

    def _retryable(self, exc: Exception) -> bool:
        # Two batches waiting on each other's unique keys, taken in opposite orders.
        return isinstance(exc, psycopg.errors.DeadlockDetected)

    def _cursor(self, connection: Any) -> Any:
        return connection.cursor(row_factory=dict_row)  # the caller's own connection too

    def _run_script(self, connection: Any, name: str) -> None:
        if name in _FUNCTION_MIGRATIONS:
            connection.execute(self._prepare(function_body(self._texts[name])))
        elif name in self._queries:  # PostgreSQL runs several statements in one execute
            connection.execute(self._queries[name])

    def _new_watch(self) -> ChangeWatch:
        if not self.wakeup:
            return ChangeWatch()
        return NotifyWatch(self._connect, self._queries["listen"])

    def _fetch(self, cursor: Any) -> list[Row]:
        try:
            rows: list[Row] = cursor.fetchall()
        except psycopg.DataError:  # a time Python cannot hold: read each row leniently
            rows = list(lenient_rows(cursor))
        return rows

    def _moment(self, value: Any) -> datetime:
        try:
            moment: datetime = value.astimezone(UTC)
        except AttributeError:
            raise TypeError(f"{value!r} is not a timestamp") from None
        return moment

    def _time_param(self, moment: datetime) -> datetime:
        return moment

    def _seconds_param(self, seconds: float) -> float:
        return float(seconds)

    # -- scheduling --------------------------------------------------------------------------

    def _store(self, jobs: Sequence[NewJob]) -> list[Stored]:
        if not one_write(jobs, self.insert_batch):
            return super()._store(jobs)  # several statements: one transaction
        # One statement is atomic on its own: in autocommit it is its own transaction,
        # without the round trips of BEGIN and COMMIT around it.
        with self._session() as connection:
            return self._insert_on(connection, jobs)

    def _insert_on(self, connection: Any, jobs: Sequence[NewJob]) -> list[Stored]:
        """Store ``jobs`` inside the connection's current transaction (or, in autocommit, in
        one per statement), in input order."""
        step = functools.partial(self._insert_step, connection)
        stored: list[Stored] = run_plan(self._insert_plan(jobs), step)
        return stored

    def _insert_step(self, connection: Any, name: str, params: dict[str, Any]) -> list[Row]:
        """One step of an insert plan; the insert statements' text is composed once per
        client encoding (composing ``psycopg.sql`` objects costs more on every call than
        sending the statement does in Python)."""
        cursor = self._cursor(connection)
        text = self._composed_text(connection, name)
        cursor.execute(text, params, prepare=self._prepared(connection))
        return self._fetch(cursor)

    def _prepared(self, connection: Any) -> bool | None:
        """``prepare=True`` on the adapter's own connections with ``prepare=on``; else the
        connection's own setting (a ``schedule_with`` connection is the caller's)."""
        return True if connection.prepare_threshold == _ONLY_WHEN_ASKED else None

    def _composed_text(self, connection: Any, name: str) -> bytes:
        key = (name, connection.info.encoding)
        text = self._composed.get(key)
        if text is None:
            text = self._composed[key] = self._queries[name].as_bytes(connection)
        return text

    # -- scheduling from asyncio -------------------------------------------------------------

    async def aschedule(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        """``schedule`` on the event loop's own ``AsyncConnection``: the same statements,
        plan and records, only the I/O is awaited. A plan that writes more than once runs in
        one transaction, retried when PostgreSQL aborts it to break a deadlock."""
        if not jobs:
            return []
        if not self._schema_ready:
            await asyncio.to_thread(self.migrate)  # once: creates the schema if missing
        atomic = one_write(jobs, self.insert_batch)
        for attempt in range(1, _CONFLICT_ATTEMPTS + 1):
            try:
                async with self._async_connections.use() as connection:
                    if atomic:
                        stored = await self._ainsert_on(connection, jobs)
                    else:
                        async with connection.transaction():
                            stored = await self._ainsert_on(connection, jobs)
                return [item.record for item in stored]
            except psycopg.Error as exc:
                if attempt < _CONFLICT_ATTEMPTS and self._retryable(exc):
                    _log.info("queuebox: aschedule() was chosen to break a deadlock; retrying")
                    continue
                mapped = self._failure(exc)
                if mapped is None:
                    raise
                raise mapped from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        await self._async_connections.aclose()

    def close(self) -> None:
        super().close()
        self._async_connections.close_all()

    async def _aconnect(self) -> psycopg.AsyncConnection[Any]:
        try:
            return await psycopg.AsyncConnection.connect(
                self._conninfo, **self._connection_options()
            )
        except psycopg.Error as exc:
            error, cause = self._connect_failure(exc)
            raise error from cause

    async def _ainsert_on(
        self, connection: psycopg.AsyncConnection[Any], jobs: Sequence[NewJob]
    ) -> list[Stored]:
        step = functools.partial(self._ainsert_step, connection)
        stored: list[Stored] = await arun_plan(self._insert_plan(jobs), step)
        return stored

    async def _ainsert_step(
        self, connection: psycopg.AsyncConnection[Any], name: str, params: dict[str, Any]
    ) -> list[Row]:
        cursor: Any = connection.cursor(row_factory=dict_row)
        text = self._composed_text(connection, name)
        await cursor.execute(text, params, prepare=self._prepared(connection))
        try:
            rows: list[Row] = await cursor.fetchall()
        except psycopg.DataError:  # a holder's time Python cannot hold: read it leniently
            rows = list(lenient_rows(cursor))
        return rows

    # -- transactional enqueue ---------------------------------------------------------------

    def schedule_with(
        self, connection: psycopg.Connection[Any], jobs: Sequence[NewJob]
    ) -> list[JobRecord]:
        """Store ``jobs`` through the caller's ``connection``, inside its transaction.

        Nothing is committed here: the jobs, and the NOTIFY that wakes workers, exist if and
        only if the caller's transaction commits (on an autocommit connection, at once).
        The connection must reach the adapter's database; the adapter creates its schema
        through its own connection first if it is missing.

        Unique keys are honoured as by ``schedule``: a job whose key a committed job holds, or
        one this transaction stored, returns that job. When another transaction holds the key
        with a job not yet committed, this call waits until that transaction ends. A
        serialization failure or a deadlock is raised as psycopg raises it (not as
        ``StorageUnavailable``): the caller's transaction failed, and the caller retries it.
        """
        if not isinstance(connection, psycopg.Connection):
            # Else a wrong object fails deep in the insert ("'str' object has no attribute
            # 'cursor'"), an AsyncConnection with a coroutine never awaited.
            raise ValidationError(
                f"connection={connection!r} is not a psycopg 3 connection "
                "(psycopg.Connection): pass the one whose transaction the jobs join"
            )
        if not jobs:
            return []
        with self._session():
            pass  # connects, and creates the schema if it is missing
        try:
            return [stored.record for stored in self._insert_on(connection, jobs)]
        except psycopg.OperationalError as exc:
            if (exc.sqlstate or "").startswith("40"):  # class 40: transaction rollback
                raise
            raise self._unavailable("PostgreSQL is unavailable", exc) from exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _refused_credentials(exc: psycopg.OperationalError) -> bool:
    """A wrong password or an unknown user: no retry will fix it, so it is a configuration
    error, not an unreachable store (libpq reports it without a SQLSTATE)."""
    text = str(exc)
    return exc.sqlstate in {"28P01", "28000"} or any(
        marker in text
        for marker in ("password authentication failed", "no password supplied", "auth failed")
    )
