"""The PostgreSQL store, on psycopg 3: ``postgresql://`` and ``postgres://`` URLs.

One autocommit connection per adapter serves every call behind a lock (a worker's heartbeat
thread calls ``extend`` while its main thread claims and completes); a second connection,
opened by the first ``wait_for_work``, only LISTENs. Each claim is one ``UPDATE`` over a
``SELECT ... FOR UPDATE SKIP LOCKED``; all SQL lives in ``sql/postgres.sql``. Unique keys
rest on a partial unique index (``INSERT ... ON CONFLICT DO NOTHING``, then read the holder);
recurring ticks on an upsert into ``<table>_recurring`` in the job's transaction. When the server
drops a connection, the call in flight raises ``StorageUnavailable`` and the next call opens
a new one; a forked child never touches its parent's connections. See ``docs/postgres.md``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row

from queuebox.backends.base import (
    Adapter,
    Capabilities,
    JobRecord,
    JobState,
    NewJob,
    QueueCounts,
    RecurringStore,
    TransactionalEnqueue,
)
from queuebox.backends.postgres_support import (
    URL_OPTIONS,
    check_identifier,
    close_quietly,
    display_url,
    fetch_one,
    identifier,
    parse_flag,
    parse_job_id,
    short_channel,
    sleep_until,
    split_url,
    to_record,
    to_utc,
    usable,
)
from queuebox.backends.sql import load_queries
from queuebox.errors import ConfigurationError, PayloadError, StorageUnavailable

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "URL_OPTIONS", "PostgresAdapter"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_Conn = psycopg.Connection[DictRow]

#: Named queries that build each schema version, in order: the position is the version.
MIGRATIONS = ("migrate_v1", "migrate_v2")
SCHEMA_VERSION = len(MIGRATIONS)
DEFAULT_TABLE = "queuebox_jobs"

_BATCH = 1000  # jobs per INSERT statement
#: Rounds of "insert, else read the holder" for unique keys. Another round is needed only when
#: a holder ended between the two statements; running out means the key is churning wildly.
_UNIQUE_ROUNDS = 20
#: Attempts of schedule()'s transaction when PostgreSQL aborts it to break a deadlock (two
#: batches waiting on each other's unique keys, taken in opposite orders).
_DEADLOCK_ATTEMPTS = 3
_BACKOFF, _MAX_BACKOFF = 0.05, 2.0  # seconds between failed connection attempts

#: Connections a forked child inherited. The child must neither use them nor close them
#: (closing would end the parent's session) and dropping them would warn, so they stay here.
_INHERITED: list[object] = []


@dataclass(frozen=True, slots=True)
class _Stored:
    """One job of a schedule call: its record, and whether this call stored it (false when
    its unique key was held and ``record`` is the holder's)."""

    record: JobRecord
    stored: bool


class PostgresAdapter(Adapter, RecurringStore, TransactionalEnqueue):
    """Jobs in one PostgreSQL table, claimed with ``FOR UPDATE SKIP LOCKED``.

    ``url`` is a ``postgresql://`` URL (or a libpq ``key=value`` string). Its query
    parameters ``schema``, ``table`` and ``wakeup`` configure queuebox and are removed
    before the rest reaches libpq; the keyword arguments of the same names win over them.
    """

    schemes = ("postgresql", "postgres")
    capabilities = Capabilities(wakeup=True, unique=True)

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        table: str | None = None,
        wakeup: bool | None = None,
        application_name: str = "queuebox",
        connect_timeout: int = 10,
    ) -> None:
        conninfo, options = split_url(url)
        self.schema = schema if schema is not None else options.get("schema") or None
        self.table = table if table is not None else options.get("table") or DEFAULT_TABLE
        check_identifier("schema", self.schema, 63)
        check_identifier("table", self.table, 48)
        self.wakeup = wakeup if wakeup is not None else parse_flag(options.get("wakeup", "on"))
        if not self.wakeup:
            self.capabilities = Capabilities(wakeup=False, unique=True)
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
        self._migrate_key = f"queuebox.migrate:{qualified}"
        self._queries = self._compose(load_queries("postgres"))
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._listen_lock = threading.Lock()
        self._conn: _Conn | None = None
        self._listener: _Conn | None = None
        self._schema_ready = False
        self._failures = 0
        self._retry_at = 0.0

    @classmethod
    def from_url(cls, url: str) -> PostgresAdapter:
        return cls(url)

    def __repr__(self) -> str:
        return f"PostgresAdapter({self._url!r}, schema={self.schema!r}, table={self.table!r})"

    # -- queries and connections ------------------------------------------------------------

    def _compose(self, texts: dict[str, str]) -> dict[str, sql.Composed]:
        table = self.table
        names = {
            "jobs": identifier(self.schema, table),
            "migrations": identifier(self.schema, f"{table}_migrations"),
            "recurring": identifier(self.schema, f"{table}_recurring"),
            "schema": sql.Identifier(self.schema or "public"),
            "due_index": sql.Identifier(f"{table}_due_idx"),
            "next_index": sql.Identifier(f"{table}_next_idx"),
            "queue_index": sql.Identifier(f"{table}_queue_idx"),
            "unique_index": sql.Identifier(f"{table}_unique_idx"),
            "next_statistics": identifier(self.schema, f"{table}_next_stats"),
            "channel": sql.Literal(self.channel),
            "channel_name": sql.Identifier(self.channel),
        }
        return {name: sql.SQL(text).format(**names) for name, text in texts.items()}

    def _q(self, name: str) -> sql.Composed:
        return self._queries[name]

    def _unavailable(self, what: str, exc: BaseException) -> StorageUnavailable:
        detail = str(exc).strip().splitlines()
        return StorageUnavailable(
            f"{what}: {detail[0] if detail else type(exc).__name__}", url=self._url
        )

    def _check_fork(self) -> None:
        if self._pid == os.getpid():
            return
        _INHERITED.extend(conn for conn in (self._conn, self._listener) if conn is not None)
        self._conn = self._listener = None
        self._lock = threading.RLock()
        self._listen_lock = threading.Lock()
        self._pid = os.getpid()

    def _connect(self) -> _Conn:
        pause = self._retry_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        try:
            conn = psycopg.connect(
                self._conninfo, autocommit=True, prepare_threshold=None, row_factory=dict_row
            )
        except psycopg.OperationalError as exc:
            self._failures += 1
            backoff = _BACKOFF * 2 ** min(self._failures - 1, 10)
            self._retry_at = time.monotonic() + min(_MAX_BACKOFF, backoff)
            raise self._unavailable("cannot connect to PostgreSQL", exc) from exc
        except psycopg.Error as exc:
            raise ConfigurationError(f"cannot connect to {self._url}: {exc}") from exc
        self._failures, self._retry_at = 0, 0.0
        return conn

    def _run(self, work: Callable[[_Conn], _T], *, migrated: bool = True) -> _T:
        """Run ``work`` on the adapter's connection, opening a new one when needed."""
        self._check_fork()
        with self._lock:
            conn = self._conn
            if conn is None or not usable(conn):
                self._conn = None
                close_quietly(conn)
                conn = self._conn = self._connect()
            try:
                if migrated and not self._schema_ready:
                    self._ensure_schema(conn)
                return work(conn)
            except psycopg.DataError as exc:
                # Only a payload written past the core can get here (it escapes NUL as
                # \u0000): say what the store refused rather than leak a driver error.
                raise PayloadError(f"PostgreSQL refused the job's data: {exc}") from exc
            except psycopg.OperationalError as exc:
                if conn.closed:
                    self._conn = None
                    close_quietly(conn)
                raise self._unavailable("PostgreSQL is unavailable", exc) from exc

    def _ensure_schema(self, conn: _Conn) -> None:
        params = {"schema": self.schema, "table": f"{self.table}_migrations"}
        version = 0
        if fetch_one(conn.execute(self._q("migrations_table_exists"), params))["present"]:
            version = fetch_one(conn.execute(self._q("schema_version")))["version"]
        if version < SCHEMA_VERSION:
            self._migrate(conn)
        self._schema_ready = True

    def _migrate(self, conn: _Conn) -> None:
        with conn.transaction():
            conn.execute(self._q("quiet_notices"))
            conn.execute(self._q("migrate_lock"), {"key": self._migrate_key})
            if self.schema is not None:
                exists = conn.execute(self._q("schema_exists"), {"schema": self.schema})
                if not fetch_one(exists)["present"]:
                    conn.execute(self._q("create_schema"))
            conn.execute(self._q("create_migrations_table"))
            current = fetch_one(conn.execute(self._q("schema_version")))["version"]
            for version, name in enumerate(MIGRATIONS, start=1):
                if version > current:
                    conn.execute(self._q(name))
                    conn.execute(self._q("record_version"), {"version": version})
        self._schema_ready = True

    def migrate(self) -> None:
        """Create or upgrade the table, its indexes and the version table; idempotent.

        Concurrent calls (two processes starting at once) queue on an advisory lock.
        """
        self._run(self._migrate, migrated=False)

    def close(self) -> None:
        self._check_fork()
        with self._listen_lock:
            listener, self._listener = self._listener, None
            close_quietly(listener)
        with self._lock:
            conn, self._conn = self._conn, None
            close_quietly(conn)

    # -- time and scheduling ----------------------------------------------------------------

    def now(self) -> datetime:
        return to_utc(self._run(lambda conn: fetch_one(conn.execute(self._q("now"))))["now"])

    def schedule(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        if not jobs:
            return []

        def work(conn: _Conn) -> list[JobRecord]:
            for attempt in range(1, _DEADLOCK_ATTEMPTS + 1):
                try:
                    with conn.transaction():
                        return [stored.record for stored in self._insert(conn, jobs)]
                except psycopg.errors.DeadlockDetected:
                    if attempt == _DEADLOCK_ATTEMPTS:
                        raise
                    _log.info("queuebox: schedule() was chosen to break a deadlock; retrying")
            raise AssertionError("unreachable")  # pragma: no cover

        return self._run(work)

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
        if not jobs:
            return []
        self._run(lambda conn: None)
        try:
            return [stored.record for stored in self._insert(connection, jobs)]
        except psycopg.OperationalError as exc:
            if (exc.sqlstate or "").startswith("40"):  # class 40: transaction rollback
                raise
            raise self._unavailable("PostgreSQL is unavailable", exc) from exc

    def _insert(self, conn: psycopg.Connection[Any], jobs: Sequence[NewJob]) -> list[_Stored]:
        """Store ``jobs`` inside the connection's current transaction, in input order.

        A job whose unique key is held gets the holder's record, with ``stored`` false.
        """
        results: list[_Stored | None] = [None] * len(jobs)
        with conn.cursor(row_factory=dict_row) as cursor:
            for start in range(0, len(jobs), _BATCH):
                positions = range(start, min(start + _BATCH, len(jobs)))
                self._insert_batch(cursor, jobs, positions, results)
        return [result for result in results if result is not None]  # every one is set

    def _insert_batch(
        self,
        cursor: psycopg.Cursor[DictRow],
        jobs: Sequence[NewJob],
        positions: Sequence[int],
        results: list[_Stored | None],
    ) -> None:
        """Store the jobs at ``positions``: insert, then read the holders of the keys the
        insert skipped, and insert again the jobs whose holder ended in between."""
        pending = list(positions)
        taken: dict[tuple[str, str], JobRecord] = {}  # keys this batch stored
        for _ in range(_UNIQUE_ROUNDS):
            batch = [jobs[position] for position in pending]
            keyed = any(job.unique_key is not None for job in batch)
            query = self._q("schedule_unique" if keyed else "schedule")
            cursor.execute(query, _schedule_params(batch))
            missing = _match_inserted(cursor.fetchall(), jobs, pending, results, taken)
            if not missing:
                return
            wanted = sorted({(jobs[p].queue, jobs[p].unique_key or "") for p in missing})
            params = {
                "queues": [queue for queue, _ in wanted],
                "unique_keys": [key for _, key in wanted],
            }
            cursor.execute(self._q("unique_holders"), params)
            holders = {(row["queue"], row["unique_key"]): to_record(row) for row in cursor}
            pending = []
            for position in missing:
                holder = holders.get((jobs[position].queue, jobs[position].unique_key or ""))
                if holder is None:  # it ended after blocking the insert: insert again
                    pending.append(position)
                else:
                    results[position] = _Stored(holder, stored=False)
            if not pending:
                return
        raise StorageUnavailable(
            f"could not store or find the holder of unique keys after {_UNIQUE_ROUNDS} rounds: "
            "their jobs keep ending as fast as they are stored",
            url=self._url,
        )

    # -- recurring jobs ---------------------------------------------------------------------

    def schedule_tick(
        self, key: str, tick: datetime, job: NewJob, *, store: bool = True
    ) -> JobRecord | None:
        """Record ``tick`` for ``key`` and store ``job``, in one transaction.

        The upsert of the tick row takes its lock until commit, so concurrent calls for one
        key run one after the other and each sees the tick the previous one recorded.
        """
        if tick.tzinfo is None:
            raise ValueError(f"the tick of recurring job {key!r} must be timezone-aware")

        def work(conn: _Conn) -> JobRecord | None:
            with conn.transaction():
                moved = conn.execute(self._q("record_tick"), {"key": key, "tick": tick})
                if moved.fetchone() is None or not store:
                    return None
                [result] = self._insert(conn, [job])
                return result.record if result.stored else None

        return self._run(work)

    def recurring_ticks(self) -> dict[str, datetime]:
        rows = self._run(lambda conn: conn.execute(self._q("recurring_ticks")).fetchall())
        return {row["key"]: to_utc(row["last_tick"]) for row in rows}

    # -- execution --------------------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        queues: Sequence[str] | None,
        *,
        limit: int = 1,
        lease: float,
    ) -> list[JobRecord]:
        if limit <= 0 or (queues is not None and not queues):
            return []
        params = {
            "worker": worker_id,
            "queues": None if queues is None else list(queues),
            "limit": limit,
            "lease": float(lease),
        }
        rows = self._run(lambda conn: conn.execute(self._q("claim"), params).fetchall())
        records = [to_record(row, with_token=True) for row in rows]
        # RETURNING follows no order: give the worker its jobs best first.
        return sorted(records, key=lambda job: (job.priority, job.run_at, int(job.id)))

    def _owned_write(self, query: str, job_id: str, lock_token: str, **params: object) -> bool:
        key = parse_job_id(job_id)
        if key is None or not isinstance(lock_token, str):
            return False
        values = {"id": key, "token": lock_token, **params}
        return self._run(lambda conn: conn.execute(self._q(query), values).rowcount) > 0

    def complete(self, job_id: str, lock_token: str, *, keep: bool = False) -> bool:
        return self._owned_write("complete_keep" if keep else "complete_delete", job_id, lock_token)

    def complete_many(self, acks: Sequence[tuple[str, str]], *, keep: bool = False) -> list[bool]:
        pairs = [(parse_job_id(job_id), token) for job_id, token in acks]
        valid = [(key, token) for key, token in pairs if key is not None]
        done: set[tuple[int | None, str]] = set()
        if valid:
            params = {"ids": [key for key, _ in valid], "tokens": [token for _, token in valid]}
            query = self._q("complete_many_keep" if keep else "complete_many_delete")
            rows = self._run(lambda conn: conn.execute(query, params).fetchall())
            done = {(row["id"], row["token"]) for row in rows}
        results = []
        for pair in pairs:  # a pair listed twice succeeds once, as with sequential calls
            results.append(pair in done)
            done.discard(pair)
        return results

    def reschedule(self, job_id: str, lock_token: str, *, delay: float, error: str) -> bool:
        return self._owned_write("reschedule", job_id, lock_token, delay=float(delay), error=error)

    def fail(self, job_id: str, lock_token: str, *, error: str, keep: bool = True) -> bool:
        if not keep:
            return self._owned_write("fail_delete", job_id, lock_token)
        return self._owned_write("fail_keep", job_id, lock_token, error=error)

    def release(self, job_id: str, lock_token: str) -> bool:
        return self._owned_write("release", job_id, lock_token)

    def extend(self, job_id: str, lock_token: str, *, lease: float) -> bool:
        return self._owned_write("extend", job_id, lock_token, lease=float(lease))

    def wait_for_work(self, queues: Sequence[str] | None, timeout: float) -> None:
        """Return on a NOTIFY for one of ``queues``, when their next job is due, or at
        ``timeout``. Without a listener (``wakeup`` off, or the server unreachable) it
        still returns when the next job is due: polling is the fallback."""
        deadline = time.monotonic() + max(0.0, timeout)
        wanted = None if queues is None else set(queues)
        if wanted is not None and not wanted:
            sleep_until(deadline)
            return
        self._check_fork()
        with self._listen_lock:
            listener = self._listening() if self.wakeup else None
            params = {"queues": None if wanted is None else sorted(wanted)}
            try:
                due_in = self._run(
                    lambda conn: fetch_one(conn.execute(self._q("next_due"), params))
                )
            except StorageUnavailable as exc:
                _log.warning("queuebox: waiting without a due time: %s", exc)
            else:
                if due_in["wait"] is not None:
                    if due_in["wait"] <= 0:
                        return
                    deadline = min(deadline, time.monotonic() + due_in["wait"])
            if listener is None:
                sleep_until(deadline)
                return
            try:
                for note in listener.notifies(timeout=max(0.0, deadline - time.monotonic())):
                    if wanted is None or note.payload in wanted:
                        return
            except psycopg.Error as exc:  # return early: the next call listens again
                _log.warning("queuebox: lost the LISTEN connection: %s", exc)
                self._listener = None
                close_quietly(listener)

    def _listening(self) -> _Conn | None:
        """The LISTEN connection, drained of notifications the next due-time query covers."""
        conn = self._listener
        if conn is not None and usable(conn):
            while conn.pgconn.notifies() is not None:
                pass
            return conn
        self._listener = None
        close_quietly(conn)
        try:
            conn = self._connect()
        except StorageUnavailable as exc:
            _log.warning("queuebox: cannot LISTEN, polling instead: %s", exc)
            return None
        try:
            conn.execute(self._q("listen"))
        except psycopg.Error as exc:
            _log.warning("queuebox: cannot LISTEN, polling instead: %s", exc)
            close_quietly(conn)
            return None
        self._listener = conn
        return conn

    # -- inspection and administration ------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        key = parse_job_id(job_id)
        if key is None:
            return None
        row = self._run(lambda conn: conn.execute(self._q("get"), {"id": key}).fetchone())
        return None if row is None else to_record(row)

    def list_jobs(
        self,
        *,
        queues: Sequence[str] | None = None,
        states: Sequence[JobState] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        params = {
            "queues": None if queues is None else list(queues),
            "states": None if states is None else [JobState(state).value for state in states],
            "limit": max(0, limit),
            "offset": max(0, offset),
        }
        rows = self._run(lambda conn: conn.execute(self._q("list_jobs"), params).fetchall())
        return [to_record(row) for row in rows]

    def counts(self) -> list[QueueCounts]:
        rows = self._run(lambda conn: conn.execute(self._q("counts")).fetchall())
        return [QueueCounts(**row) for row in rows]

    def retry(self, job_id: str) -> bool:
        key = parse_job_id(job_id)
        if key is None:
            return False
        return self._run(lambda conn: conn.execute(self._q("retry"), {"id": key}).rowcount) > 0

    def delete(self, job_id: str) -> bool:
        key = parse_job_id(job_id)
        if key is None:
            return False
        return self._run(lambda conn: conn.execute(self._q("delete"), {"id": key}).rowcount) > 0

    def clear(self, queues: Sequence[str] | None = None) -> int:
        params = {"queues": None if queues is None else list(queues)}
        return self._run(lambda conn: conn.execute(self._q("clear"), params).rowcount)


def _schedule_params(batch: Sequence[NewJob]) -> dict[str, list[Any]]:
    return {
        "names": [job.name for job in batch],
        "handlers": [job.handler for job in batch],
        "queues": [job.queue for job in batch],
        "priorities": [job.priority for job in batch],
        "run_ats": [job.run_at for job in batch],
        "delays": [float(job.delay) for job in batch],
        "unique_keys": [job.unique_key for job in batch],
    }


def _match_inserted(
    rows: Sequence[DictRow],
    jobs: Sequence[NewJob],
    pending: Sequence[int],
    results: list[_Stored | None],
    taken: dict[tuple[str, str], JobRecord],
) -> list[int]:
    """Give each job at ``pending`` the row the insert returned for it; return the positions
    of the jobs whose key was held, which got none.

    Rows come in id order, which is input order: jobs without a key map one to one onto
    the rows without one. Of the jobs of a batch that share a key, the first stored it and
    the later ones return its record.
    """
    plain: list[JobRecord] = []
    keyed: dict[tuple[str, str], JobRecord] = {}
    for row in rows:
        record = to_record(row)
        if record.unique_key is None:
            plain.append(record)
        else:
            keyed[record.queue, record.unique_key] = record
    fresh = iter(plain)
    missing: list[int] = []
    for position in pending:
        job = jobs[position]
        if job.unique_key is None:
            results[position] = _Stored(next(fresh), stored=True)
        elif (held := keyed.pop((job.queue, job.unique_key), None)) is not None:
            results[position] = _Stored(held, stored=True)
            taken[job.queue, job.unique_key] = held
        elif (held := taken.get((job.queue, job.unique_key))) is not None:
            results[position] = _Stored(held, stored=False)
        else:
            missing.append(position)
    return missing
