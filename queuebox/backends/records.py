"""The values that cross the store contract: what the core hands a store, what a store hands
back, and the states a job moves through.

Every state and every transition is written down here once (see ``JobState``); the stores
derive a record's state from its columns with the same rules, on the store's clock.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from queuebox.json_text import load_json

__all__ = [
    "BATCH_TEXT",
    "EARLIEST_RUN_AT",
    "LATEST_RUN_AT",
    "RUNTIME_BUCKETS",
    "UNREADABLE_NAME",
    "WORKER_LOST",
    "CancelOutcome",
    "JobPage",
    "JobRecord",
    "JobState",
    "MinuteStats",
    "NewJob",
    "QueueCounts",
    "RateLimit",
    "Row",
    "RunningJob",
    "WorkerInfo",
    "batch_bounds",
    "job_record",
    "reclaim_note",
    "record_from_row",
    "stored_record",
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
class RateLimit:
    """At most ``count`` starts in any ``per`` seconds (a sliding window, on the store's
    clock), across every worker."""

    count: int
    per: float

    _UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"100/m"`` (``/s``, ``/m``, ``/h``); ``ValueError`` saying what is accepted."""
        count, slash, unit = str(text).strip().partition("/")
        per = cls._UNITS.get(unit.strip().lower())
        if not slash or per is None or not count.strip().isdigit() or int(count) < 1:
            raise ValueError(
                f"rate_limit={text!r} is not valid: give starts per second, minute or hour, "
                "e.g. '20/s', '100/m' or '5000/h'"
            )
        return cls(int(count), per)

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}.get(self.per)
        return f"{self.count}/{unit}" if unit else f"{self.count}/{self.per:g}s"


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
    #: Flow control (stores that declare ``FlowControl``): runs of one queue that share a
    #: ``limit_key`` count together (per queue, as unique keys are, so that a store can keep
    #: a limit beside its queue's jobs); at most ``max_concurrency`` of them run at once,
    #: and at most ``rate_limit`` of them start in any window. A job held back waits; it
    #: spends no attempt and never blocks jobs of other keys.
    limit_key: str | None = None
    max_concurrency: int | None = None
    rate_limit: RateLimit | None = None


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
    #: The flow-control key it counts against, if any (see ``NewJob.limit_key``).
    limit_key: str | None = None


#: The most handler text one store call carries (an insert statement, a script call); a
#: job larger than that goes alone. A batch's jobs travel as one value (PostgreSQL's arrays,
#: SQLite's JSON text, the Redis script's packed argument): without a bound, hundreds of
#: payloads near ``max_payload_bytes`` would make one value past what a store takes (1 GB
#: in PostgreSQL and SQLite, 512 MB by Redis's default proto-max-bulk-len).
BATCH_TEXT = 8 * 1024 * 1024


# The slot descriptors of JobRecord's fields. A frozen dataclass's __init__ sets each field
# through object.__setattr__ (its own __setattr__ refuses), which costs about 2 us for the
# 21 fields; every claimed and every stored job builds a record, so ``job_record`` sets
# the slots directly.
_new_object = object.__new__
_set_id = vars(JobRecord)["id"].__set__
_set_name = vars(JobRecord)["name"].__set__
_set_handler = vars(JobRecord)["handler"].__set__
_set_queue = vars(JobRecord)["queue"].__set__
_set_priority = vars(JobRecord)["priority"].__set__
_set_run_at = vars(JobRecord)["run_at"].__set__
_set_attempts = vars(JobRecord)["attempts"].__set__
_set_state = vars(JobRecord)["state"].__set__
_set_created_at = vars(JobRecord)["created_at"].__set__
_set_updated_at = vars(JobRecord)["updated_at"].__set__
_set_locked_at = vars(JobRecord)["locked_at"].__set__
_set_locked_by = vars(JobRecord)["locked_by"].__set__
_set_lock_expires_at = vars(JobRecord)["lock_expires_at"].__set__
_set_lock_token = vars(JobRecord)["lock_token"].__set__
_set_last_error = vars(JobRecord)["last_error"].__set__
_set_failed_at = vars(JobRecord)["failed_at"].__set__
_set_completed_at = vars(JobRecord)["completed_at"].__set__
_set_unique_key = vars(JobRecord)["unique_key"].__set__
_set_cancelled_at = vars(JobRecord)["cancelled_at"].__set__
_set_unreadable = vars(JobRecord)["unreadable"].__set__
_set_limit_key = vars(JobRecord)["limit_key"].__set__


def job_record(
    *,
    id: str,
    name: str,
    handler: str,
    queue: str,
    priority: int,
    run_at: datetime,
    attempts: int,
    state: JobState,
    created_at: datetime,
    updated_at: datetime,
    locked_at: datetime | None = None,
    locked_by: str | None = None,
    lock_expires_at: datetime | None = None,
    lock_token: str | None = None,
    last_error: str | None = None,
    failed_at: datetime | None = None,
    completed_at: datetime | None = None,
    unique_key: str | None = None,
    cancelled_at: datetime | None = None,
    unreadable: str | None = None,
    limit_key: str | None = None,
) -> JobRecord:
    """``JobRecord(...)`` with the same arguments and the same result (equal, hashable,
    frozen), built without the per-field ``object.__setattr__`` calls: for the paths that
    build one record per job (claims, inserts, rows and Redis hashes read back)."""
    record: JobRecord = _new_object(JobRecord)
    _set_id(record, id)
    _set_name(record, name)
    _set_handler(record, handler)
    _set_queue(record, queue)
    _set_priority(record, priority)
    _set_run_at(record, run_at)
    _set_attempts(record, attempts)
    _set_state(record, state)
    _set_created_at(record, created_at)
    _set_updated_at(record, updated_at)
    _set_locked_at(record, locked_at)
    _set_locked_by(record, locked_by)
    _set_lock_expires_at(record, lock_expires_at)
    _set_lock_token(record, lock_token)
    _set_last_error(record, last_error)
    _set_failed_at(record, failed_at)
    _set_completed_at(record, completed_at)
    _set_unique_key(record, unique_key)
    _set_cancelled_at(record, cancelled_at)
    _set_unreadable(record, unreadable)
    _set_limit_key(record, limit_key)
    return record


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


#: Upper bounds (seconds) of the run-time histogram buckets; a last bucket takes the rest.
RUNTIME_BUCKETS: tuple[float, ...] = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    1800.0,
)


@dataclass(frozen=True, slots=True)
class MinuteStats:
    """What the runs of one job name on one queue did in one minute (``ThroughputHistory``).

    ``runtime_counts`` has one count per ``RUNTIME_BUCKETS`` bound (runs that took at most
    that long and more than the bound before), then one for longer runs.
    """

    queue: str
    name: str
    minute: datetime  # the minute's start, UTC
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    cancelled: int = 0
    runtime_counts: tuple[int, ...] = (0,) * (len(RUNTIME_BUCKETS) + 1)
    runtime_sum: float = 0.0

    @property
    def finished(self) -> int:
        return self.succeeded + self.retried + self.failed + self.cancelled

    def merged(self, other: MinuteStats) -> MinuteStats:
        """The sum of two tallies of the same minute, queue and name."""
        return MinuteStats(
            self.queue,
            self.name,
            self.minute,
            self.succeeded + other.succeeded,
            self.retried + other.retried,
            self.failed + other.failed,
            self.cancelled + other.cancelled,
            tuple(a + b for a, b in zip(self.runtime_counts, other.runtime_counts, strict=True)),
            self.runtime_sum + other.runtime_sum,
        )


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of ``JobSearch.search_jobs``: jobs, and the cursor of the next page
    (``None`` at the end). A page may hold fewer jobs than asked even before the end: a
    search that scans (a text filter) stops after a bounded amount of work and says where
    to go on."""

    jobs: list[JobRecord]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job a worker runs now, as its registry record shows it."""

    id: str
    name: str
    queue: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One worker process as the store's registry knows it (``WorkerRegistry``).

    ``beat_at`` is the store's time of its last beat; ``lost`` says the beats stopped
    (for longer than the ``ttl`` the worker gave), so its process died or froze.
    """

    id: str
    host: str
    pid: int
    queues: tuple[str, ...] | None
    concurrency: int
    version: str
    started_at: datetime
    jobs: tuple[RunningJob, ...] = ()
    beat_at: datetime | None = None
    lost: bool = False

    def to_json(self) -> str:
        """The record a store keeps for this worker (as opaque text)."""
        return json.dumps(
            {
                "id": self.id,
                "host": self.host,
                "pid": self.pid,
                "queues": None if self.queues is None else list(self.queues),
                "concurrency": self.concurrency,
                "version": self.version,
                "started_at": self.started_at.isoformat(),
                "jobs": [
                    [job.id, job.name, job.queue, job.started_at.isoformat()] for job in self.jobs
                ],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str, *, beat_at: datetime, lost: bool) -> WorkerInfo:
        """The worker a stored record describes; ``ValueError`` for text that is not one."""
        try:
            data = load_json(text)
            queues = data["queues"]
            return cls(
                id=str(data["id"]),
                host=str(data["host"]),
                pid=int(data["pid"]),
                queues=None if queues is None else tuple(str(q) for q in queues),
                concurrency=int(data["concurrency"]),
                version=str(data["version"]),
                started_at=datetime.fromisoformat(data["started_at"]),
                jobs=tuple(
                    RunningJob(str(i), str(n), str(q), datetime.fromisoformat(t))
                    for i, n, q, t in data["jobs"]
                ),
                beat_at=beat_at,
                lost=lost,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a queuebox worker record: {exc}") from None


def batch_bounds(jobs: Sequence[NewJob], batch: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each store call's jobs: at most ``batch`` jobs, and no more
    handler text than ``BATCH_TEXT`` unless one job alone holds more."""
    bounds: list[tuple[int, int]] = []
    start, text = 0, 0
    for position, job in enumerate(jobs):
        size = len(job.handler)
        if position > start and (position - start == batch or text + size > BATCH_TEXT):
            bounds.append((start, position))
            start, text = position, 0
        text += size
    if start < len(jobs):
        bounds.append((start, len(jobs)))
    return bounds


def stored_record(
    job: NewJob,
    job_id: str,
    run_at: datetime,
    created_at: datetime,
    *,
    ready: bool,
    limit_key: str | None,
) -> JobRecord:
    """The record of ``job`` as a store just stored it (never claimed), from what the store
    decided (its id and times, whether it is due on the store's clock) and the job itself,
    without reading it back."""
    return job_record(
        id=job_id,
        name=job.name,
        handler=job.handler,
        queue=job.queue,
        priority=job.priority,
        run_at=run_at,
        attempts=0,
        state=JobState.READY if ready else JobState.SCHEDULED,
        created_at=created_at,
        updated_at=created_at,
        unique_key=job.unique_key,
        limit_key=limit_key,
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
    """A database row read by column name (``sqlite3.Row`` or a dict, a psycopg dict row)."""

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
        limit_key=row["limit_key"] if "limit_key" in keys else None,
    )
