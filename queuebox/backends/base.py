"""The storage adapter contract: one required core, and optional abilities declared as
interfaces.

An adapter stores job records, claims due jobs for workers atomically and applies the outcome
a worker reports. It decides no policy: validation, backoff delays and the attempt limit come
from the core, which passes their results in. ``docs/adapters.md`` documents every method;
``queuebox.testing.AdapterContract`` is the test suite every adapter must pass, and each
optional interface below has a contract class of its own in ``queuebox.testing``.

``Adapter`` is the required core. A store that can do more subclasses the interfaces it
implements as well (``class MyStore(Adapter, RecurringStore): ...``); the core finds them with
``isinstance``, never by looking a method up by name, so a store that declares an interface
and misses one of its methods fails when it is built.

Rules every adapter follows:

* Time is the store's clock (``now()`` in SQL, ``TIME`` in Lua), never the caller's.
* ``claim`` is atomic: two workers never hold the same job at once.
* Every worker-owned write (``complete``, ``reschedule``, ``fail``, ``release``, ``extend``,
  ``mark_cancelled``) applies only while the caller's ``lock_token`` is still the job's token,
  and returns ``False``, changing nothing, when it is not.
* One record the store cannot read never makes a call raise: see ``unreadable_record``.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, Self

from queuebox.backends.records import (
    EARLIEST_RUN_AT,
    LATEST_RUN_AT,
    RUNTIME_BUCKETS,
    UNREADABLE_NAME,
    WORKER_LOST,
    CancelOutcome,
    JobPage,
    JobRecord,
    JobState,
    MinuteStats,
    NewJob,
    QueueCounts,
    RateLimit,
    Row,
    RunningJob,
    WorkerInfo,
    reclaim_note,
    record_from_row,
    unreadable_record,
)

__all__ = [
    "ALL_QUEUES",
    "EARLIEST_RUN_AT",
    "LATEST_RUN_AT",
    "RUNTIME_BUCKETS",
    "UNREADABLE_NAME",
    "WORKER_LOST",
    "Adapter",
    "AsyncScheduling",
    "CancelOutcome",
    "Cancellation",
    "Capabilities",
    "ClaimAhead",
    "ClaimedBatch",
    "FlowControl",
    "JobPage",
    "JobRecord",
    "JobSearch",
    "JobState",
    "MinuteStats",
    "NewJob",
    "PipelinedClaims",
    "Purgeable",
    "QueueCounts",
    "RateLimit",
    "RecurringStore",
    "Row",
    "RunningJob",
    "ThroughputHistory",
    "TransactionalEnqueue",
    "WorkerInfo",
    "WorkerRegistry",
    "reclaim_note",
    "record_from_row",
    "unreadable_record",
]

#: Passed as ``queues`` to mean every queue.
ALL_QUEUES: None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    """How an adapter's required methods behave, where stores may differ.

    Only flags that something reads: the contract suite skips a test only when one of these
    says the adapter cannot do what the test needs, never silently.
    """

    #: ``wait_for_work`` returns within milliseconds of an enqueue, even from another process.
    wakeup: bool = False
    #: The store can be shared by several processes (false for the in-memory store).
    multiprocess: bool = True
    #: The store keeps completed jobs when asked to (``complete(..., keep=True)``).
    keep_completed: bool = True
    #: ``schedule`` honours ``NewJob.unique_key`` (read by ``perform_later`` for unique jobs).
    unique: bool = False


class Adapter(abc.ABC):
    """The required core of every store. Subclasses implement the abstract methods."""

    #: The URL schemes this adapter answers (``queuebox.backends.from_url``); a custom store
    #: registers them through the ``queuebox.adapters`` entry point group.
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

        A job is claimable when it is not failed, completed or cancelled, ``run_at <= now``,
        and it is unlocked or its lock expired (``lock_expires_at <= now``). Jobs come best
        first: lower ``priority``, then earlier ``run_at``, then earlier enqueue, across
        ``queues`` (``None`` means every queue; names compare exactly, case included). Each
        claimed job gets ``locked_at = now``, ``locked_by = worker_id``, ``lock_expires_at =
        now + lease``, a fresh random ``lock_token`` and ``attempts + 1``. Reclaiming an
        expired lock counts as an attempt; the adapter notes it in ``last_error``. A job the
        store cannot read comes back as an ``unreadable_record`` holding its lock token.
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

    def extend_many(self, locks: Sequence[tuple[str, str]], *, lease: float) -> list[bool]:
        """``extend`` for several ``(job_id, lock_token)`` pairs: the heartbeat renews every
        job a worker holds with one call; stores with round trips should batch it."""
        return [self.extend(job_id, token, lease=lease) for job_id, token in locks]

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
        """Make a failed, cancelled, completed or scheduled job run now: clear ``failed_at``,
        ``completed_at`` and ``cancelled_at``, ``attempts = 0``, ``run_at = now``. A job whose
        lock is live is not touched. ``False`` when there is no such job or it is running."""

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


# -- optional interfaces ----------------------------------------------------------------------
#
# Each is a small ABC a store subclasses beside ``Adapter``. The contract class of the same
# name in ``queuebox.testing`` (``RecurringStoreContract``, ...) checks it.


class RecurringStore(abc.ABC):
    """Recurring jobs (``cron`` / ``every``): each tick is stored once however many workers
    try. Without it, a worker that imports recurring jobs refuses to start."""

    @abc.abstractmethod
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

    @abc.abstractmethod
    def recurring_ticks(self) -> dict[str, datetime]:
        """The last tick recorded for each recurring job key."""


class TransactionalEnqueue(abc.ABC):
    """``Job.set(connection=conn).perform_later(...)``: enqueue inside the caller's own
    transaction, so the job exists if and only if the caller's transaction commits."""

    @abc.abstractmethod
    def schedule_with(self, connection: Any, jobs: Sequence[NewJob]) -> list[JobRecord]:
        """``schedule(jobs)`` through the caller's ``connection``, committing nothing."""


class Cancellation(abc.ABC):
    """``queuebox.cancel(job_id)``: stop a job for good, waiting or running.

    A waiting job becomes cancelled at once. A running job gets ``cancelled_at`` and keeps
    its lock; its worker learns of it from ``cancel_requested`` (called about once a second
    while it holds jobs), stops the run and records it with ``mark_cancelled``. A cancelled job
    is never claimed again, and its unique key is freed; ``retry`` runs it again.
    """

    @abc.abstractmethod
    def cancel(self, job_id: str) -> CancelOutcome:
        """Cancel one job; see ``CancelOutcome`` for what each answer means. A running job
        whose lock lapsed (its worker died) is cancelled at once (``CANCELLED``)."""

    @abc.abstractmethod
    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of ``job_ids`` (jobs this worker holds) were asked to stop. Read-only and
        cheap: one round trip for all of them."""

    @abc.abstractmethod
    def mark_cancelled(self, job_id: str, lock_token: str, *, error: str | None = None) -> bool:
        """The worker stopped a cancelled run (or the job cancelled itself): clear the lock
        fields and the unique key, set ``cancelled_at`` if it is not set, record ``error``
        when given, keep the job."""


class AsyncScheduling(abc.ABC):
    """``await X.aperform_later(...)`` without blocking the event loop: the store's own
    asyncio client. Without it, the core runs ``schedule`` in a worker thread."""

    @abc.abstractmethod
    async def aschedule(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        """``schedule(jobs)``, awaited: the same records, the same atomicity."""

    async def aclose(self) -> None:  # noqa: B027 - stores without async resources need none
        """Release the asyncio client(s) of the running event loop."""


class ClaimedBatch(Protocol):
    """Jobs claimed by a split round trip, not yet turned into records (``ClaimAhead``)."""

    def __len__(self) -> int: ...

    def records(self) -> list[JobRecord]:
        """The jobs in claim order."""
        ...


class PipelinedClaims(abc.ABC):
    """Fewer round trips for a worker on one queue: the acknowledgements of a batch travel
    with the next claim, and an idle worker's wake-up brings the jobs with it.

    Each method must behave exactly as the plain calls it replaces would, one after the
    other; only the number of round trips changes (``PipelinedClaimsContract`` checks it).
    """

    @abc.abstractmethod
    def complete_and_claim(
        self,
        acks: Sequence[tuple[str, str]],
        *,
        keep: bool = False,
        worker_id: str,
        queue: str,
        limit: int,
        lease: float,
    ) -> tuple[list[bool], list[JobRecord]]:
        """``complete_many(acks, keep=keep)`` then ``claim(worker_id, [queue], limit=limit,
        lease=lease)``, in one round trip."""

    @abc.abstractmethod
    def wait_and_claim(
        self, worker_id: str, queue: str, *, limit: int, lease: float, timeout: float
    ) -> list[JobRecord]:
        """``wait_for_work([queue], timeout)`` then that claim, returning as soon as jobs are
        claimed (``[]`` when nothing came within ``timeout``)."""


class ClaimAhead(PipelinedClaims):
    """``complete_and_claim`` split in two halves, so that a worker with batches of several
    jobs claims the next batch while it runs one (``queuebox.runner.claims.ClaimingAhead``)."""

    @abc.abstractmethod
    def send_complete_and_claim(
        self,
        acks: Sequence[tuple[str, str]],
        *,
        keep: bool = False,
        worker_id: str,
        queue: str,
        limit: int,
        lease: float,
    ) -> Callable[[], tuple[list[bool], ClaimedBatch]]:
        """Send ``complete_and_claim``'s round trip and return without waiting for it.

        The acknowledgements and the claim take effect when this returns or soon after; the
        returned function, called once and later, reads their outcome: one bool per
        acknowledgement and the claimed batch.
        """


class Purgeable(abc.ABC):
    """Delete everything the adapter keeps, counters and bookkeeping included, so that a
    test starts from nothing (``clear`` deletes jobs only). Stores with a schema per test
    (a fresh file, a fresh table) need not offer it."""

    @abc.abstractmethod
    def purge(self) -> None:
        """Remove every job and every key or row the adapter owns; ids may be reused after."""


class FlowControl(abc.ABC):
    """Hold work back across every worker: paused queues, and the limits of
    ``NewJob.limit_key`` (``max_concurrency``, ``rate_limit``), enforced inside the atomic
    claim on the store's clock.

    ``claim`` (and every fused claim) of a store that declares it never returns a job of a
    paused queue; it skips a job whose (queue, key) already has ``max_concurrency`` runs
    holding live locks, or had ``rate_limit.count`` starts in the last ``rate_limit.per``
    seconds, and takes the next eligible one (other keys are never held up, and the claim
    does not walk the held-back jobs one by one). A job held back spends no attempt. A run
    frees its key's slot when its outcome is written, or when its lock lapses.
    """

    @abc.abstractmethod
    def pause(self, queue: str) -> bool:
        """Stop every claim from ``queue`` until ``resume``; ``False`` if it was paused
        already. Stored: it survives restarts. Jobs are still scheduled; runs go on."""

    @abc.abstractmethod
    def resume(self, queue: str) -> bool:
        """Let claims take ``queue``'s jobs again; ``False`` if it was not paused. Idle
        workers of the queue wake as for new work."""

    @abc.abstractmethod
    def paused_queues(self) -> set[str]:
        """The queues paused now."""


class WorkerRegistry(abc.ABC):
    """Every worker process records itself in the store, so that ``queuebox status`` and the
    dashboard list the workers of every machine."""

    #: How long a lost worker's record is kept (shown as lost) before it is removed.
    lost_kept: float = 3600.0

    @abc.abstractmethod
    def beat(self, worker: WorkerInfo, *, ttl: float, stats: Sequence[MinuteStats] = ()) -> None:
        """Record or renew ``worker`` (``beat_at`` = the store's now); it counts as lost when
        no beat came for ``ttl`` seconds. A store that also declares ``ThroughputHistory``
        adds ``stats`` (``add_stats``) in the same round trip; the worker passes none to a
        store that does not."""

    @abc.abstractmethod
    def retire(self, worker_id: str) -> None:
        """Remove a worker's record (a clean exit)."""

    @abc.abstractmethod
    def workers(self) -> list[WorkerInfo]:
        """Every recorded worker, by host then id; lost ones flagged ``lost``, and those lost
        for longer than ``lost_kept`` removed."""


class ThroughputHistory(abc.ABC):
    """Per queue, job name and minute: runs that succeeded, were retried, failed or were
    cancelled, and their run-time histogram, kept for ``retention`` seconds. Workers add
    their tallies with their registry beat (``WorkerRegistry.beat``), a few seconds apart,
    never one round trip per job."""

    #: How long minutes are kept (24 hours at minute resolution).
    retention: float = 86400.0

    @abc.abstractmethod
    def add_stats(self, stats: Sequence[MinuteStats]) -> None:
        """Add each tally to the stored one of its minute, queue and name (atomically, as
        several workers add at once), and drop minutes older than ``retention``."""

    @abc.abstractmethod
    def stats(self, *, since: datetime, queues: Sequence[str] | None = None) -> list[MinuteStats]:
        """The stored minutes from ``since`` on, sorted by minute, queue, then name."""


class JobSearch(abc.ABC):
    """Browsing jobs at any scale (the dashboard): filters, and pages that follow a cursor
    instead of an offset, so that page 1,000 costs what page 1 costs."""

    #: The most rows one call may look at before it returns a page (perhaps short, even
    #: empty) with a cursor to go on from: a job name, queue or text that few of a million
    #: jobs match costs a request no more than this.
    scan_limit: int = 10_000

    @abc.abstractmethod
    def search_jobs(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        name: str | None = None,
        text: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """Jobs that match every filter given: one queue, one state, an exact job name, and
        ``text`` found (case-insensitively) in the handler (the arguments) or the last
        error. Newest first (the latest enqueued); ``cursor`` is a previous page's
        ``next_cursor``. A page is full unless the end is reached (``next_cursor`` is
        ``None``) or the call looked at ``scan_limit`` rows first: then it may be short or
        empty, and its ``next_cursor`` goes on below the rows it looked at."""
