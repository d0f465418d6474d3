"""The storage adapter contract.

An adapter stores job records, claims due jobs for workers atomically and applies the outcome
a worker reports. It decides no policy: validation, backoff delays and the attempt limit come
from the core, which passes their results in. ``docs/adapters.md`` documents every method;
``queuebox.testing.AdapterContract`` is the test suite every adapter must pass.

Rules every adapter follows:

* Time is the store's clock (``now()`` in SQL, ``TIME`` in Lua), never the caller's.
* ``claim`` is atomic: two workers never hold the same job at once.
* Every worker-owned write (``complete``, ``reschedule``, ``fail``, ``release``, ``extend``)
  applies only while the caller's ``lock_token`` is still the job's token, and returns
  ``False``, changing nothing, when it is not.
"""

from __future__ import annotations

import abc
import enum
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, Self

__all__ = [
    "ALL_QUEUES",
    "Adapter",
    "Capabilities",
    "JobRecord",
    "JobState",
    "NewJob",
    "QueueCounts",
    "reclaim_note",
    "record_from_row",
]

#: Passed as ``queues`` to mean every queue.
ALL_QUEUES: None = None


class JobState(enum.StrEnum):
    """Where a job is in its life, as seen from the store's clock at read time."""

    SCHEDULED = "scheduled"  # waiting for its run_at
    READY = "ready"  # due, unlocked: the next claim may take it
    RUNNING = "running"  # locked by a worker (its lock may have expired, see lock_expires_at)
    FAILED = "failed"  # failed_at set; kept for inspection, never claimed
    COMPLETED = "completed"  # succeeded and kept (delete_successful_jobs=False)


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job the core has validated and encoded, ready to store.

    ``handler`` is JSON text ``{"name": ..., "args": [...], "kwargs": {...}}``; adapters store
    it as it is and never parse it. The job runs at ``run_at`` when given (an aware datetime),
    else ``delay`` seconds after the store's current time. With a ``unique_key``, ``schedule``
    stores nothing while a job of the same queue holding the same key is waiting or running,
    and returns that job instead (stores that declare ``Capabilities.unique``). Keys are per
    queue, so that a store can keep a queue's keys beside its jobs (one Redis Cluster slot).
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
    #: Held while the job waits or runs; cleared when it fails or is kept as completed.
    unique_key: str | None = None


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """How many jobs one queue holds in each state."""

    queue: str
    scheduled: int = 0
    ready: int = 0
    running: int = 0
    failed: int = 0
    completed: int = 0

    @property
    def total(self) -> int:
        return self.scheduled + self.ready + self.running + self.failed + self.completed


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an adapter can do beyond the required contract.

    The contract suite skips a test only when the adapter declares it cannot do what the
    test needs, never silently.
    """

    #: ``wait_for_work`` returns within milliseconds of an enqueue, even from another process.
    wakeup: bool = False
    #: The store can be shared by several processes (false for the in-memory store).
    multiprocess: bool = True
    #: The store keeps completed jobs when asked to (``complete(..., keep=True)``).
    keep_completed: bool = True
    #: ``schedule`` honours ``NewJob.unique_key``.
    unique: bool = False
    #: ``schedule_tick`` and ``recurring_ticks`` work (recurring jobs).
    recurring: bool = False
    extra: frozenset[str] = field(default_factory=frozenset)


class Adapter(abc.ABC):
    """Base class of every store. Subclasses implement the abstract methods."""

    #: The URL schemes ``queuebox.backends.from_url`` maps to this adapter.
    schemes: tuple[str, ...] = ()
    capabilities: Capabilities = Capabilities()

    @classmethod
    def from_url(cls, url: str) -> Adapter:
        """Build the adapter from one of its URLs; stores reachable by URL override this."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a URL")

    # -- time -------------------------------------------------------------------------------

    @abc.abstractmethod
    def now(self) -> datetime:
        """The store's current time (aware, UTC)."""

    # -- scheduling -------------------------------------------------------------------------

    @abc.abstractmethod
    def schedule(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        """Store ``jobs``; return their records in the same order.

        Each job is stored atomically (all of it or none of it). A batch may be split into
        several writes, but a job is never half-stored.
        """

    def schedule_one(self, job: NewJob) -> JobRecord:
        return self.schedule([job])[0]

    # -- execution --------------------------------------------------------------------------

    @abc.abstractmethod
    def claim(
        self,
        worker_id: str,
        queues: Sequence[str] | None,
        *,
        limit: int = 1,
        lease: float,
    ) -> list[JobRecord]:
        """Atomically lock and return up to ``limit`` due jobs for ``worker_id``.

        A job is claimable when it is not failed or completed, ``run_at <= now``, and it is
        unlocked or its lock expired (``lock_expires_at <= now``). Jobs come best first:
        lower ``priority``, then earlier ``run_at``, then earlier enqueue, across
        ``queues`` (``None`` means every queue). Each claimed job gets ``locked_at = now``,
        ``locked_by = worker_id``, ``lock_expires_at = now + lease``, a fresh random
        ``lock_token`` and ``attempts + 1``. Reclaiming an expired lock counts as an attempt;
        the adapter notes it in ``last_error``.
        """

    @abc.abstractmethod
    def complete(self, job_id: str, lock_token: str, *, keep: bool = False) -> bool:
        """The job succeeded: delete it, or keep it as completed when ``keep``."""

    def complete_many(self, acks: Sequence[tuple[str, str]], *, keep: bool = False) -> list[bool]:
        """``complete`` for several ``(job_id, lock_token)`` pairs; stores may batch it."""
        return [self.complete(job_id, token, keep=keep) for job_id, token in acks]

    @abc.abstractmethod
    def reschedule(self, job_id: str, lock_token: str, *, delay: float, error: str) -> bool:
        """The attempt raised: unlock, record ``error`` and run again ``delay`` s from now."""

    @abc.abstractmethod
    def fail(self, job_id: str, lock_token: str, *, error: str, keep: bool = True) -> bool:
        """The job is out of attempts: set ``failed_at`` and ``last_error``, or delete it."""

    @abc.abstractmethod
    def release(self, job_id: str, lock_token: str) -> bool:
        """Give back a claimed job without spending its attempt (``attempts - 1``).

        ``run_at`` is left as it was, so the job is due again at once.
        """

    @abc.abstractmethod
    def extend(self, job_id: str, lock_token: str, *, lease: float) -> bool:
        """Renew a held lock: ``lock_expires_at = now + lease``."""

    # -- recurring jobs (stores that declare ``Capabilities.recurring``) -------------------

    def schedule_tick(
        self, key: str, tick: datetime, job: NewJob, *, store: bool = True
    ) -> JobRecord | None:
        """Record that the recurring job ``key`` reached ``tick``, and store ``job`` for it.

        Atomically: when no tick is recorded for ``key``, or the recorded one is earlier than
        ``tick``, record ``tick`` and, unless ``store`` is false, store ``job`` (honouring its
        ``unique_key``); return the new record. Return ``None`` when ``tick`` (or a later one)
        was already recorded, or when the unique key was held, so that each tick is stored
        once however many workers try. A store may keep the tick beside ``job.queue``'s jobs.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support recurring jobs")

    def recurring_ticks(self) -> dict[str, datetime]:
        """The last tick recorded for each recurring job key."""
        raise NotImplementedError(f"{type(self).__name__} does not support recurring jobs")

    def wait_for_work(self, queues: Sequence[str] | None, timeout: float) -> None:
        """Block until work may be available on ``queues`` or ``timeout`` seconds pass.

        Returning early is always allowed (the worker then claims, and finds nothing or
        something). Adapters with ``capabilities.wakeup`` return within milliseconds of an
        enqueue or of a scheduled job becoming due. This default waits the whole timeout.
        """
        threading.Event().wait(timeout)

    # -- inspection and administration ------------------------------------------------------

    @abc.abstractmethod
    def get(self, job_id: str) -> JobRecord | None:
        """One job by id, or ``None``."""

    @abc.abstractmethod
    def list_jobs(
        self,
        *,
        queues: Sequence[str] | None = None,
        states: Sequence[JobState] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Jobs ordered by queue, then priority, then run_at, then id."""

    @abc.abstractmethod
    def counts(self) -> list[QueueCounts]:
        """Counts per queue and state, one entry per queue that holds a job, sorted by name."""

    @abc.abstractmethod
    def retry(self, job_id: str) -> bool:
        """Make a failed (or scheduled) job run now: clear ``failed_at``, ``attempts = 0``,
        ``run_at = now``. A running job is not touched. ``False`` when there is no such job
        or it is running."""

    @abc.abstractmethod
    def delete(self, job_id: str) -> bool:
        """Delete one job whatever its state; ``False`` when there was none."""

    @abc.abstractmethod
    def clear(self, queues: Sequence[str] | None = None) -> int:
        """Delete every job of ``queues`` (``None``: all queues); return how many."""

    def migrate(self) -> None:  # noqa: B027 - a no-op is right for stores without a schema
        """Create or upgrade the store's schema; idempotent."""

    def close(self) -> None:  # noqa: B027
        """Release connections. The adapter may reconnect if used again."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: ``last_error`` of a job whose lock expired and was claimed again starts with this.
WORKER_LOST = "WorkerLost"


def reclaim_note(previous_owner: str, expired_at: datetime | None) -> str:
    """The ``last_error`` an adapter records when it reclaims an expired lock."""
    when = expired_at.isoformat() if expired_at is not None else "an unknown time"
    return (
        f"{WORKER_LOST}: the lock held by worker {previous_owner} expired at {when} "
        "before the job finished; the job was claimed again"
    )


class Row(Protocol):
    """A database row read by column name (``sqlite3.Row``, a psycopg dict row)."""

    def __getitem__(self, key: str, /) -> Any: ...


def record_from_row(
    row: Row, moment: Callable[[Any], datetime], *, with_token: bool = False
) -> JobRecord:
    """Build a record from a SQL row whose columns are named as the record's fields.

    ``moment`` turns the store's time values into aware UTC datetimes; the row also carries
    the ``state`` the query derived from the store's clock.
    """

    def maybe(value: Any) -> datetime | None:
        return None if value is None else moment(value)

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
    )
