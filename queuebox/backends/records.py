"""The values that cross the store contract: what the core hands a store, what a store hands
back, and the states a job moves through.

Every state and every transition is written down here once (see ``JobState``); the stores
derive a record's state from its columns with the same rules, on the store's clock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

__all__ = [
    "EARLIEST_RUN_AT",
    "LATEST_RUN_AT",
    "UNREADABLE_NAME",
    "WORKER_LOST",
    "CancelOutcome",
    "JobRecord",
    "JobState",
    "NewJob",
    "QueueCounts",
    "Row",
    "reclaim_note",
    "record_from_row",
    "unreadable_record",
]

#: The range of run times every store can hold (the core refuses anything outside it before
#: a store sees it). Stores keep times as integer micro- or milliseconds since 1970.
EARLIEST_RUN_AT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_RUN_AT = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)

#: ``last_error`` of a job whose lock expired and was claimed again starts with this.
WORKER_LOST = "WorkerLost"
#: ``name`` of a record the store could not read (see ``unreadable_record``).
UNREADABLE_NAME = "<unreadable>"


class JobState(enum.StrEnum):
    """Where a job is in its life, as seen from the store's clock at read time.

    ::

        scheduled --(run_at reached)--> ready --(claim)--> running
        running --(success)--> deleted, or completed (kept)
        running --(error, attempts left)--> scheduled (run_at = now + attempts ** 4)
        running --(error, out of attempts; unreadable)--> failed
        running --(lock lapsed: its worker died)--> running, claimable again (an attempt)
        running --(release: stop before it started)--> ready (attempt given back)
        scheduled, ready --(cancel)--> cancelled
        running --(cancel)--> running until its worker stops it, then cancelled
        failed, cancelled, completed, scheduled --(retry)--> ready (attempts = 0)

    A record is derived in this order: ``completed_at`` set → completed; ``failed_at`` set →
    failed; ``cancelled_at`` set and no live lock → cancelled; locked → running (the lock may
    have lapsed: ``lock_expires_at`` in the past); ``run_at <= now`` → ready; else scheduled.
    """

    SCHEDULED = "scheduled"  # waiting for its run_at
    READY = "ready"  # due, unlocked: the next claim may take it
    RUNNING = "running"  # locked by a worker (its lock may have lapsed, see lock_expires_at)
    FAILED = "failed"  # failed_at set; kept for inspection, never claimed
    COMPLETED = "completed"  # succeeded and kept (delete_successful_jobs=False)
    CANCELLED = "cancelled"  # cancelled before or while it ran; kept, never claimed


class CancelOutcome(enum.StrEnum):
    """What ``cancel(job_id)`` did."""

    CANCELLED = "cancelled"  # it was waiting (scheduled or ready): it will never run
    REQUESTED = "requested"  # it is running: its worker was asked to stop it
    FINISHED = "finished"  # it had ended already (completed, failed, cancelled): unchanged
    NOT_FOUND = "not_found"  # no such job


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job the core has validated and encoded, ready to store.

    ``handler`` is JSON text ``{"name": ..., "args": [...], "kwargs": {...}}``; adapters store
    it as it is and never parse it. The job runs at ``run_at`` when given (an aware datetime
    between ``EARLIEST_RUN_AT`` and ``LATEST_RUN_AT``), else ``delay`` seconds (finite, >= 0)
    after the store's current time. With a ``unique_key``, ``schedule`` stores nothing while a
    job of the same queue holding the same key is waiting or running, and returns that job
    instead (stores that declare ``Capabilities.unique``). Keys are per queue, so that a store
    can keep a queue's keys beside its jobs (one Redis Cluster slot).
    """

    name: str
    handler: str
    queue: str
    priority: int
    delay: float = 0.0
    run_at: datetime | None = None
    unique_key: str | None = None


@dataclass(frozen=True, slots=True)
class JobRecord:
    """One stored job. Datetimes are timezone-aware UTC.

    ``lock_token`` is set only on the records ``claim`` returns, for the worker that holds it;
    ``get`` and ``list_jobs`` leave it ``None`` so that the token never leaves the worker.
    ``unreadable`` is set (and most other fields are placeholders) when the store holds the
    job but could not read it; a worker fails such a job at once with that text.
    """

    id: str
    name: str
    handler: str
    queue: str
    priority: int
    run_at: datetime
    attempts: int
    state: JobState
    created_at: datetime
    updated_at: datetime
    locked_at: datetime | None = None
    locked_by: str | None = None
    lock_expires_at: datetime | None = None
    lock_token: str | None = None
    last_error: str | None = None
    failed_at: datetime | None = None
    completed_at: datetime | None = None
    #: Held while the job waits or runs; cleared when it fails, is cancelled or kept.
    unique_key: str | None = None
    #: When it was cancelled (waiting) or a cancel was requested (running).
    cancelled_at: datetime | None = None
    #: Why the store could not read this record (see ``unreadable_record``).
    unreadable: str | None = None


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """How many jobs one queue holds in each state."""

    queue: str
    scheduled: int = 0
    ready: int = 0
    running: int = 0
    failed: int = 0
    completed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return (
            self.scheduled
            + self.ready
            + self.running
            + self.failed
            + self.completed
            + self.cancelled
        )


def reclaim_note(previous_owner: str, expired_at: datetime | None) -> str:
    """The ``last_error`` an adapter records when it reclaims an expired lock."""
    when = expired_at.isoformat() if expired_at is not None else "an unknown time"
    return (
        f"{WORKER_LOST}: the lock held by worker {previous_owner} expired at {when} "
        "before the job finished; the job was claimed again"
    )


def unreadable_record(
    job_id: str,
    queue: str,
    problem: str,
    *,
    now: datetime,
    lock_token: str | None = None,
    raw_handler: str = "",
    attempts: int = 0,
) -> JobRecord:
    """The record a store returns for a job it holds but cannot read (a column out of range,
    bytes that are not text, a record written past queuebox).

    From ``claim`` (with ``lock_token``, state running) the worker fails it at once with
    ``problem`` as the error, and goes on with the rest of the batch; from ``get`` and
    ``list_jobs`` it shows as failed, so that it can be seen and deleted. Never raise for one
    bad record: one record must not stop a worker or hide the others.
    """
    return JobRecord(
        id=job_id,
        name=UNREADABLE_NAME,
        handler=raw_handler,
        queue=queue,
        priority=100,
        run_at=now,
        attempts=attempts,
        state=JobState.RUNNING if lock_token is not None else JobState.FAILED,
        created_at=now,
        updated_at=now,
        lock_token=lock_token,
        last_error=f"UnreadableRecord: {problem}",
        failed_at=None if lock_token is not None else now,
        unreadable=problem,
    )


class Row(Protocol):
    """A database row read by column name (``sqlite3.Row``, a psycopg dict row)."""

    def __getitem__(self, key: str, /) -> Any: ...


def record_from_row(
    row: Row, moment: Callable[[Any], datetime], *, with_token: bool = False
) -> JobRecord:
    """Build a record from a SQL row whose columns are named as the record's fields.

    ``moment`` turns the store's time values into aware UTC datetimes; the row also carries
    the ``state`` the query derived from the store's clock. Raises ``ValueError``,
    ``TypeError`` or ``OverflowError`` for a row it cannot read: callers turn that into
    ``unreadable_record`` for that row alone.
    """

    def maybe(value: Any) -> datetime | None:
        return None if value is None else moment(value)

    keys = row.keys() if hasattr(row, "keys") else ()
    return JobRecord(
        id=str(row["id"]),
        name=row["name"],
        handler=row["handler"],
        queue=row["queue"],
        priority=row["priority"],
        run_at=moment(row["run_at"]),
        attempts=row["attempts"],
        state=JobState(row["state"]),
        created_at=moment(row["created_at"]),
        updated_at=moment(row["updated_at"]),
        locked_at=maybe(row["locked_at"]),
        locked_by=row["locked_by"],
        lock_expires_at=maybe(row["lock_expires_at"]),
        lock_token=row["lock_token"] if with_token else None,
        last_error=row["last_error"],
        failed_at=maybe(row["failed_at"]),
        completed_at=maybe(row["completed_at"]),
        unique_key=row["unique_key"],
        cancelled_at=maybe(row["cancelled_at"]) if "cancelled_at" in keys else None,
    )
