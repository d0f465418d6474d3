"""``SQLStore``: the job logic of every SQL store, written once over named queries.

A dialect (``SQLiteAdapter``, ``PostgresAdapter``, or one of your own: see
``docs/sql-base.md``) subclasses ``SQLStore``, points ``query_file`` at its ``.sql`` file and
implements the small surface of ``SQLDialect`` (``dialect.py``): open a connection, say which
driver errors mean "the store is unreachable", and convert times. The job logic lives here:
rows to records (one unreadable row never hides the others), token-checked writes, claims
with or without ``UPDATE ... RETURNING``, unique keys, and ``wait_for_work`` over the
dialect's ``ChangeWatch``.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from queuebox.backends.base import (
    Adapter,
    FlowControl,
    JobRecord,
    JobState,
    NewJob,
    QueueCounts,
    Row,
)
from queuebox.backends.sql.dialect import SQLDialect
from queuebox.backends.sql.inserts import (
    InsertPlan,
    Stored,
    fresh_record,
    insert_plan,
    run_plan,
)
from queuebox.backends.sql.rows import read_records
from queuebox.backends.sql.waiting import Wake, sleep_until
from queuebox.errors import InvalidSchedule, StorageUnavailable

__all__ = ["SQLStore"]

_log = logging.getLogger("queuebox.backends.sql")
#: Attempts of a schedule transaction that the database aborted to break a deadlock.
_CONFLICT_ATTEMPTS = 3
#: The scalar parameters of one job's insert, in ``_job_values`` order ...
INSERT_PARAMS = (
    *("name", "handler", "queue", "priority", "run_at", "delay", "unique_key"),
    *("limit_key", "max_concurrency", "rate_count", "rate_per"),
)
#: ... and the arrays of a batch's (``insert_batch`` above 1), in the same order.
INSERT_ARRAYS = (
    *("names", "handlers", "queues", "priorities", "run_ats", "delays", "unique_keys"),
    *("limit_keys", "max_concurrencies", "rate_counts", "rate_pers"),
)


class SQLStore(SQLDialect, Adapter):
    """The required core of a store, implemented over a dialect's named queries."""

    def _records(self, rows: Sequence[Row], *, with_token: bool = False) -> list[JobRecord]:
        return read_records(rows, self._moment, self.now, with_token=with_token)

    # -- time and scheduling -----------------------------------------------------------------

    def now(self) -> datetime:
        return self._moment(self._read("now")[0]["now"])

    def _checked_time(self, moment: datetime) -> Any:
        try:
            offset = moment.utcoffset()
        except (AttributeError, TypeError):
            offset = None
        if offset is None:
            raise InvalidSchedule(f"{moment!r} is not a timezone-aware datetime; pass one")
        return self._time_param(moment)

    def _job_params(self, jobs: Sequence[NewJob]) -> dict[str, Any]:
        """The insert's parameters: scalars for a statement of one job (``insert_batch`` 1,
        or a lone job's ``insert_job`` with ``lone_inserts``), else ``_batch_params``."""
        if self.insert_batch == 1 or (self.lone_inserts and len(jobs) == 1):
            [job] = jobs
            return self._one_job_params(job)
        return self._batch_params(jobs)

    def _job_values(self, job: NewJob) -> tuple[Any, ...]:
        """One job's insert values, in the order of ``INSERT_PARAMS``."""
        seconds = self._seconds_param
        limited, rate = job.limit_key is not None, job.rate_limit
        return (
            job.name,
            job.handler,
            job.queue,
            job.priority,
            None if job.run_at is None else self._checked_time(job.run_at),
            seconds(job.delay),
            job.unique_key,
            job.limit_key,
            job.max_concurrency if limited else None,
            rate.count if limited and rate is not None else None,
            seconds(rate.per) if limited and rate is not None else None,
        )

    def _one_job_params(self, job: NewJob) -> dict[str, Any]:
        """The scalar parameters of one job's insert."""
        return dict(zip(INSERT_PARAMS, self._job_values(job), strict=True))

    def _batch_params(self, jobs: Sequence[NewJob]) -> dict[str, Any]:
        """The parameters of a batch's insert: one array per column (``INSERT_ARRAYS``),
        which ``_array_param`` binds. A dialect that reads a batch differently (SQLite: one
        JSON array of rows) overrides this."""
        columns = zip(*(self._job_values(job) for job in jobs), strict=True)
        return {name: list(values) for name, values in zip(INSERT_ARRAYS, columns, strict=True)}

    def _insert_plan(self, jobs: Sequence[NewJob]) -> InsertPlan:
        """The statements that store ``jobs`` (``inserts.insert_plan``), as this dialect
        writes them: ``insert_batch`` jobs per insert, a lone job to ``insert_job`` with
        ``lone_inserts``, records built from the jobs with ``fresh_inserts``."""
        return insert_plan(
            jobs,
            batch=self.insert_batch,
            job_params=self._job_params,
            records=self._records,
            fresh=self._fresh_record if self.fresh_inserts else None,
            lone=self.lone_inserts,
        )

    def _fresh_record(self, job: NewJob, row: Row) -> JobRecord:
        return fresh_record(job, row, self._moment, keeps_limits=isinstance(self, FlowControl))

    def _insert_on(self, connection: Any, jobs: Sequence[NewJob]) -> list[Stored]:
        """Store ``jobs`` inside the connection's current transaction, in input order."""
        rows = functools.partial(self._rows, connection)
        stored: list[Stored] = run_plan(self._insert_plan(jobs), rows)
        return stored

    def schedule(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        # A large batch may be split in several transactions so that workers are not kept
        # waiting for the write lock; each job is still stored atomically.
        chunk = self.schedule_chunk or max(1, len(jobs))
        records: list[JobRecord] = []
        for start in range(0, len(jobs), chunk):
            stored = self._store(jobs[start : start + chunk])
            records.extend(item.record for item in stored)
        return records

    def _store(self, jobs: Sequence[NewJob]) -> list[Stored]:
        with self._session() as connection:
            for attempt in range(1, _CONFLICT_ATTEMPTS + 1):
                try:
                    with self._transaction(connection):
                        return self._insert_on(connection, jobs)
                except self.driver_errors as exc:
                    if attempt == _CONFLICT_ATTEMPTS or not self._retryable(exc):
                        raise
                    _log.info("queuebox: schedule() was chosen to break a deadlock; retrying")
        raise AssertionError("unreachable")  # pragma: no cover

    # -- execution ---------------------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        queues: Sequence[str] | None,
        *,
        limit: int = 1,
        lease: float,
    ) -> list[JobRecord]:
        if limit < 1 or (queues is not None and not queues):
            return []
        params = self._claim_params(worker_id, queues, limit, lease)
        return self._claimed(self._claim_rows(params))

    def _claim_params(
        self, worker_id: str, queues: Sequence[str] | None, limit: int, lease: float
    ) -> dict[str, Any]:
        return {
            "worker_id": worker_id,
            "queues": None if queues is None else list(dict.fromkeys(queues)),
            "limit": limit,
            "lease": self._seconds_param(lease),
            # Fresh random text for every claim; each job's token is nonce.id.
            "nonce": secrets.token_hex(16),
        }

    def _claim_rows(self, params: dict[str, Any]) -> list[Row]:
        if self.update_returning:
            return self._write_rows(self._claim_query(params), params)
        return self._claim_stepwise(params)

    def _claimed(self, rows: Sequence[Row]) -> list[JobRecord]:
        records = self._records(rows, with_token=True)
        # RETURNING gives rows in no promised order: give the worker its jobs best first.
        records.sort(key=lambda job: (job.priority, job.run_at, _id_order(job.id)))
        return records

    def _claim_query(self, params: dict[str, Any]) -> str:
        """The name of the claim statement to run (a mixin may pick another)."""
        return "claim"

    def _claim_stepwise(self, params: dict[str, Any]) -> list[Row]:
        with self._in_transaction() as connection:
            ids = [row["id"] for row in self._rows(connection, "claim_candidates", params)]
            if not ids:
                return []
            self._execute(connection, "claim_lock", {**params, "ids": ids})
            return self._rows(connection, "claim_read", {**params, "ids": ids})

    def _owned_write(self, name: str, job_id: str, lock_token: str, **extra: Any) -> bool:
        key = self._job_key(job_id)
        if key is None or not isinstance(lock_token, str) or not lock_token:
            return False
        return self._write_count(name, {"id": key, "token": lock_token, **extra}) > 0

    def _owned_writes(
        self, name: str, many: str, locks: Sequence[tuple[str, str]], **extra: Any
    ) -> list[bool]:
        """One token-checked write per ``(job_id, lock_token)``: one statement (``many``,
        which returns the ``id`` of each job it changed) with ``UPDATE ... RETURNING``, else
        one transaction. A pair listed twice succeeds once, as sequential calls would."""
        pairs = [(self._job_key(job_id), token) for job_id, token in locks]
        valid = dict.fromkeys(
            (k, t) for k, t in pairs if k is not None and isinstance(t, str) and t
        )
        done: set[tuple[Any, str]] = set()
        tokens = dict(list(valid))  # id -> token; fewer entries when an id repeats
        if valid and self.update_returning and len(tokens) == len(valid):
            params = {"ids": list(tokens), "tokens": list(tokens.values()), **extra}
            done = {(row["id"], tokens[row["id"]]) for row in self._write_rows(many, params)}
        elif valid:  # one job under two tokens: statement by statement says which held it
            with self._in_transaction() as connection:
                for key, token in valid:
                    params = {"id": key, "token": token, **extra}
                    if self._execute(connection, name, params).rowcount > 0:
                        done.add((key, token))
        results = []
        for pair in pairs:
            results.append(pair in done)
            done.discard(pair)
        return results

    def complete(self, job_id: str, lock_token: str, *, keep: bool = False) -> bool:
        return self._owned_write("complete_keep" if keep else "delete_locked", job_id, lock_token)

    def complete_many(self, acks: Sequence[tuple[str, str]], *, keep: bool = False) -> list[bool]:
        if keep:
            return self._owned_writes("complete_keep", "complete_many_keep", acks)
        return self._owned_writes("delete_locked", "complete_many_delete", acks)

    def reschedule(self, job_id: str, lock_token: str, *, delay: float, error: str) -> bool:
        delay_param = self._seconds_param(delay)
        return self._owned_write("reschedule", job_id, lock_token, delay=delay_param, error=error)

    def fail(self, job_id: str, lock_token: str, *, error: str, keep: bool = True) -> bool:
        if not keep:
            return self._owned_write("delete_locked", job_id, lock_token)
        return self._owned_write("fail_keep", job_id, lock_token, error=error)

    def release(self, job_id: str, lock_token: str) -> bool:
        return self._owned_write("release", job_id, lock_token)

    def extend(self, job_id: str, lock_token: str, *, lease: float) -> bool:
        lease_param = self._seconds_param(lease)
        return self._owned_write("extend", job_id, lock_token, lease=lease_param)

    def extend_many(self, locks: Sequence[tuple[str, str]], *, lease: float) -> list[bool]:
        return self._owned_writes("extend", "extend_many", locks, lease=self._seconds_param(lease))

    # -- waiting -----------------------------------------------------------------------------

    def wait_for_work(self, queues: Sequence[str] | None, timeout: float) -> None:
        """Return when work may be there: a job of ``queues`` or a lock falls due, a change
        the dialect's watch reports, or ``timeout`` seconds pass."""
        deadline = time.monotonic() + max(0.0, timeout)
        if queues is not None and not queues:
            sleep_until(deadline)
            return
        wanted = None if queues is None else frozenset(queues)
        params = {"queues": None if wanted is None else sorted(wanted)}
        watch = self._watcher()
        with watch.lock:
            watch.arm()
            while True:
                try:
                    wait = self._read("next_due", params)[0]["wait"]
                except StorageUnavailable as exc:
                    _log.warning("queuebox: waiting without a due time: %s", exc)
                    wait = None
                if wait is not None and wait <= 0:
                    return
                until = deadline if wait is None else min(deadline, time.monotonic() + wait)
                if until <= time.monotonic() or watch.wait(wanted, until) is not Wake.CHANGED:
                    return

    # -- inspection and administration -------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        key = self._job_key(job_id)
        rows = [] if key is None else self._read("get", {"id": key})
        return self._records(rows)[0] if rows else None

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
        return self._records(self._read("list_jobs", params))

    def counts(self) -> list[QueueCounts]:
        tally: dict[str, dict[str, int]] = {}
        for row in self._read("counts"):
            tally.setdefault(row["queue"], {})[row["state"]] = row["n"]
        return [QueueCounts(queue=queue, **tally[queue]) for queue in sorted(tally)]

    def retry(self, job_id: str) -> bool:
        key = self._job_key(job_id)
        return key is not None and self._write_count("retry", {"id": key}) > 0

    def delete(self, job_id: str) -> bool:
        key = self._job_key(job_id)
        return key is not None and self._write_count("delete", {"id": key}) > 0

    def clear(self, queues: Sequence[str] | None = None) -> int:
        return self._write_count("clear", {"queues": None if queues is None else list(queues)})


def _id_order(job_id: str) -> int:
    return int(job_id) if job_id.isdigit() else 0
