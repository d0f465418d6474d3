"""The dialect surface of the SQL base, and the plumbing every dialect shares: named
queries, connections (one per thread or one shared behind a lock; a forked child never
uses or closes its parent's), transactions, mapping driver errors, and schema migrations.

``SQLStore`` (``store.py``) adds the job logic on top; a dialect subclasses ``SQLStore`` and
implements the abstract methods below (see ``docs/sql-base.md``).
"""

from __future__ import annotations

import abc
import contextlib
import os
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from queuebox.backends.base import Row
from queuebox.backends.sql.connections import _INHERITED, ConnectionHolder
from queuebox.backends.sql.queries import is_empty, load_queries
from queuebox.backends.sql.waiting import ChangeCounterWatch, ChangeWatch
from queuebox.errors import ConfigurationError, QueueboxError

__all__ = ["SQLDialect"]

_MAX_ID = 2**63 - 1


class SQLDialect(abc.ABC):
    """What a dialect declares and implements, and the statements, transactions and
    migrations the SQL base runs through it."""

    # -- the dialect surface: class attributes -----------------------------------------------

    #: The dialect's queries: a file name under ``queuebox/backends/sql/`` or a ``Path``.
    query_file: ClassVar[str | Path]
    #: The driver's exception base classes (``sqlite3.Error``, ``psycopg.Error``).
    driver_errors: ClassVar[tuple[type[Exception], ...]] = ()
    #: Named queries that build each schema version, in order (the position is the version).
    migrations: ClassVar[tuple[str, ...]] = ("migrate_v1",)
    #: ``UPDATE ... RETURNING`` exists: claim in one statement, batch writes in one each.
    #: Without it, claims run ``claim_candidates``, ``claim_lock`` and ``claim_read`` in a
    #: transaction and batch writes run one statement per job in one transaction.
    update_returning: ClassVar[bool] = True
    #: One connection per thread (else one shared connection, used under a lock).
    connection_per_thread: ClassVar[bool] = False
    #: Every write runs inside ``begin``/``commit``, single statements included.
    writes_in_transaction: ClassVar[bool] = False
    #: Jobs per insert statement; with 1 the insert queries take scalars, else arrays.
    insert_batch: ClassVar[int] = 1
    #: With ``insert_batch`` above 1: a batch of one job (a request's enqueue) goes to the
    #: one-row statements ``insert_job`` / ``insert_unique_job``, with scalar parameters,
    #: which the dialect then defines (nothing to unpack from arrays for one job).
    lone_inserts: ClassVar[bool] = False
    #: The insert statements return only ``inserts.FRESH_COLUMNS`` (what the store decided:
    #: id, times on its clock) and each record is built from its job, instead of every
    #: column being sent back and read like a stored row.
    fresh_inserts: ClassVar[bool] = False
    #: Jobs per transaction of a large ``schedule`` (``None``: all in one).
    schedule_chunk: ClassVar[int | None] = None
    #: (first, longest) pause in seconds before connecting again after a failed attempt;
    #: ``None`` for a store without a server to spare (a local file).
    reconnect_backoff: ClassVar[tuple[float, float] | None] = (0.05, 0.2)

    #: Queries every dialect defines (see ``required_queries``).
    core_queries: ClassVar[frozenset[str]] = frozenset(
        {
            # connections, transactions and schema
            *("begin", "commit", "rollback", "session_setup"),
            *("schema_present", "schema_version", "migrate_prepare", "record_version"),
            # time and scheduling
            *("now", "insert_jobs", "insert_unique_jobs", "unique_holders"),
            # token-checked writes and waiting
            *("delete_locked", "complete_keep", "reschedule", "fail_keep", "release"),
            *("extend", "next_due", "changes", "listen"),
            # inspection and administration
            *("get", "list_jobs", "counts", "retry", "delete", "clear"),
        }
    )
    returning_queries: ClassVar[frozenset[str]] = frozenset(
        {"claim", "complete_many_delete", "complete_many_keep", "extend_many"}
    )
    stepwise_queries: ClassVar[frozenset[str]] = frozenset(
        {"claim_candidates", "claim_lock", "claim_read"}
    )
    #: Queries an optional-interface mixin adds (each mixin sets its own).
    sql_queries: ClassVar[frozenset[str]] = frozenset()

    def __init__(self) -> None:
        self._texts = texts = load_queries(self.query_file)
        self._queries = {n: self._prepare(t) for n, t in texts.items() if not is_empty(t)}
        self._connections = ConnectionHolder(
            self._open,
            close=self._close_quietly,
            alive=self._alive,
            per_thread=self.connection_per_thread,
            backoff=self.reconnect_backoff,
        )
        self._schema_ready = False
        self._watch: ChangeWatch | None = None
        self._watch_owner: tuple[int, int] | None = None
        # The connection of this thread's open ``_in_transaction`` block, if any.
        self._open_transaction = threading.local()

    @classmethod
    def required_queries(cls) -> frozenset[str]:
        """Every query name this class asks its file for."""
        names = set(cls.core_queries) | set(cls.migrations)
        names |= cls.returning_queries if cls.update_returning else cls.stepwise_queries
        if cls.lone_inserts:
            names |= {"insert_job", "insert_unique_job"}
        for klass in cls.__mro__:
            names |= vars(klass).get("sql_queries", frozenset())
        return frozenset(names)

    # -- the dialect surface: methods --------------------------------------------------------

    @abc.abstractmethod
    def _connect(self) -> Any:
        """A new DB-API connection in autocommit mode; may raise the driver's errors."""

    @abc.abstractmethod
    def _failure(self, exc: Exception) -> QueueboxError | None:
        """The error to raise for a driver error: ``StorageUnavailable`` when the store is
        unreachable (never with a password in it), another ``QueueboxError`` when it says
        what the user must fix, ``None`` for a bug (the driver's error is raised as is)."""

    @abc.abstractmethod
    def _moment(self, value: Any) -> datetime:
        """A time column's value as an aware UTC datetime (raise for one out of range)."""

    @abc.abstractmethod
    def _time_param(self, moment: datetime) -> Any:
        """An aware datetime as the store keeps times."""

    @abc.abstractmethod
    def _seconds_param(self, seconds: float) -> Any:
        """A duration (lease, delay) as the queries take it."""

    def _prepare(self, text: str) -> Any:
        """A query as the driver executes it (PostgreSQL composes identifiers in)."""
        return text

    def _array_param(self, values: list[Any]) -> Any:
        """A list parameter as the driver binds it (arrays, or JSON text)."""
        return values

    def _alive(self, connection: Any) -> bool:
        """Whether an idle connection may still be used (the server may have ended it)."""
        return True

    def _broken(self, connection: Any, exc: Exception) -> bool:
        """Whether ``connection`` must be dropped after ``exc``."""
        return False

    def _cursor(self, connection: Any) -> Any:
        """A cursor whose rows are read by column name."""
        return connection.cursor()

    def _fetch(self, cursor: Any) -> list[Row]:
        """All rows of an executed cursor (dialects read bad values leniently here)."""
        rows: list[Row] = cursor.fetchall()
        return rows

    def _retryable(self, exc: Exception) -> bool:
        """Whether a schedule transaction aborted by ``exc`` runs again (a deadlock)."""
        return False

    def _new_watch(self) -> ChangeWatch:
        """What ``wait_for_work`` waits on; by default the ``changes`` counter, if any."""
        if "changes" in self._queries:
            return ChangeCounterWatch(lambda: self._read("changes")[0])
        return ChangeWatch()

    def _run_script(self, connection: Any, name: str) -> None:
        """Run a multi-statement query (a migration), statement by statement."""
        for statement in self._texts[name].split(";\n"):
            if not is_empty(statement):
                self._cursor(connection).execute(self._prepare(statement))

    def _record_schema_version(self, connection: Any, version: int) -> None:
        self._execute(connection, "record_version", {"version": version})

    def _job_key(self, job_id: object) -> Any:
        """The primary key a job id names, or ``None`` for an id no job can have."""
        if not isinstance(job_id, str) or not (job_id.isascii() and job_id.isdigit()):
            return None
        key = int(job_id)
        return key if 0 < key <= _MAX_ID else None

    # -- connections, statements, transactions -----------------------------------------------

    def _open(self) -> Any:
        connection = self._connect()
        try:
            self._prepare_connection(connection)
        except BaseException:
            self._close_quietly(connection)
            raise
        return connection

    def _prepare_connection(self, connection: Any) -> None:
        """Set a new connection up (``session_setup``) and create the schema if needed."""
        self._execute(connection, "session_setup")
        if not self._schema_ready:
            self._migrate_on(connection)

    def _close_quietly(self, connection: Any) -> None:
        with contextlib.suppress(Exception):
            connection.close()

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        """A connection for this thread, with the driver's errors mapped."""
        try:
            with self._connections.use() as connection:
                try:
                    yield connection
                except self.driver_errors as exc:
                    if self._broken(connection, exc):
                        self._connections.discard(connection)
                    raise
        except self.driver_errors as exc:
            mapped = self._failure(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _execute(self, connection: Any, name: str, params: dict[str, Any] | None = None) -> Any:
        query = self._queries.get(name)
        if query is None:
            if name not in self._texts:
                raise KeyError(f"{self.query_file} defines no query {name!r}")
            return None  # the dialect needs no statement here
        cursor = self._cursor(connection)
        if params is None:
            cursor.execute(query)
        else:
            cursor.execute(query, self._bind(params))
        return cursor

    def _bind(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: self._array_param(v) if type(v) is list else v for k, v in params.items()}

    def _rows(self, connection: Any, name: str, params: dict[str, Any] | None = None) -> list[Row]:
        cursor = self._execute(connection, name, params)
        return [] if cursor is None else self._fetch(cursor)

    @contextlib.contextmanager
    def _transaction(self, connection: Any) -> Iterator[Any]:
        self._execute(connection, "begin")
        try:
            yield connection
        except BaseException:
            with contextlib.suppress(*self.driver_errors):  # the error may have ended it
                self._execute(connection, "rollback")
            raise
        self._execute(connection, "commit")

    @contextlib.contextmanager
    def _in_transaction(self) -> Iterator[Any]:
        """A connection inside a transaction. Blocks nest: the writes of an inner block (or
        of ``_writing``) join the outermost one, and commit with it, once."""
        connection = getattr(self._open_transaction, "connection", None)
        if connection is not None:
            yield connection
            return
        with self._session() as connection, self._transaction(connection):
            self._open_transaction.connection = connection
            try:
                yield connection
            finally:
                self._open_transaction.connection = None

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Any]:
        """A connection for one write, inside a transaction where the dialect wants one (or
        inside the enclosing ``_in_transaction`` block)."""
        if self.writes_in_transaction or getattr(self._open_transaction, "connection", None):
            with self._in_transaction() as connection:
                yield connection
            return
        with self._session() as connection:
            yield connection

    def _read(self, name: str, params: dict[str, Any] | None = None) -> list[Row]:
        with self._session() as connection:
            return self._rows(connection, name, params)

    def _write_count(self, name: str, params: dict[str, Any]) -> int:
        with self._writing() as connection:
            count: int = self._execute(connection, name, params).rowcount
            return count

    def _write_rows(self, name: str, params: dict[str, Any]) -> list[Row]:
        with self._writing() as connection:
            return self._rows(connection, name, params)

    # -- schema ------------------------------------------------------------------------------

    def _schema_version(self, connection: Any) -> int:
        present = self._rows(connection, "schema_present")
        if present and not present[0]["present"]:
            return 0
        return int(self._rows(connection, "schema_version")[0]["version"])

    def _migrate_on(self, connection: Any) -> None:
        target = len(self.migrations)
        version = self._schema_version(connection)
        if version < target:
            with self._transaction(connection):
                self._run_script(connection, "migrate_prepare")
                # Read again under the lock: another process may have migrated meanwhile.
                version = self._schema_version(connection)
                for number, name in enumerate(self.migrations, start=1):
                    if number > version:
                        self._run_script(connection, name)
                        self._record_schema_version(connection, number)
                version = max(version, target)
        if version > target:
            raise ConfigurationError(
                f"{self!r} holds schema version {version}, newer than this queuebox "
                f"understands ({target}); upgrade queuebox"
            )
        self._schema_ready = True

    def migrate(self) -> None:
        """Create or upgrade the schema; idempotent, and safe when processes race."""
        with self._session() as connection:
            self._migrate_on(connection)

    def close(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None and self._watch_owner == (id(self), os.getpid()):
            watch.close()
        self._connections.close_all()

    @property
    def open_connections(self) -> int:
        """How many connections this process holds (not counting a wake-up listener)."""
        return self._connections.open_count

    def _watcher(self) -> ChangeWatch:
        owner = (id(self), os.getpid())
        if self._watch is None or self._watch_owner != owner:  # new, or inherited by fork
            if self._watch is not None:
                _INHERITED.append(self._watch)  # the parent's listener: never close it here
            self._watch, self._watch_owner = self._new_watch(), owner
        return self._watch
