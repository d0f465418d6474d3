"""An in-memory store for tests and ``memory://``: thread-safe, one process only.

It is also the reference implementation of the adapter contract: every method is the plain
reading of its docstring in ``base.py``.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from queuebox.backends.base import (
    Adapter,
    Cancellation,
    CancelOutcome,
    Capabilities,
    FlowControl,
    JobPage,
    JobRecord,
    JobSearch,
    JobState,
    MinuteStats,
    NewJob,
    QueueCounts,
    RateLimit,
    RecurringStore,
    ThroughputHistory,
    WorkerInfo,
    WorkerRegistry,
    reclaim_note,
)
from queuebox.validation import check_page_limit, check_scan_limit

__all__ = ["MemoryAdapter"]


@dataclasses.dataclass(slots=True)
class _Row:
    id: int
    name: str
    handler: str
    queue: str
    priority: int
    run_at: datetime
    created_at: datetime
    updated_at: datetime
    attempts: int = 0
    locked_at: datetime | None = None
    locked_by: str | None = None
    lock_expires_at: datetime | None = None
    lock_token: str | None = None
    last_error: str | None = None
    failed_at: datetime | None = None
    completed_at: datetime | None = None
    unique_key: str | None = None
    cancelled_at: datetime | None = None
    limit_key: str | None = None
    max_concurrency: int | None = None
    rate_limit: RateLimit | None = None

    def lock_is_live(self, now: datetime) -> bool:
        return self.lock_expires_at is not None and self.lock_expires_at > now

    def state(self, now: datetime) -> JobState:
        if self.completed_at is not None:
            return JobState.COMPLETED
        if self.failed_at is not None:
            return JobState.FAILED
        if self.cancelled_at is not None and not self.lock_is_live(now):
            return JobState.CANCELLED
        if self.locked_at is not None:
            return JobState.RUNNING
        return JobState.READY if self.run_at <= now else JobState.SCHEDULED

    def finished(self) -> bool:
        return (
            self.completed_at is not None
            or self.failed_at is not None
            or self.cancelled_at is not None
        )

    def claimable(self, now: datetime) -> bool:
        if self.finished() or self.run_at > now:
            return False
        return not self.lock_is_live(now)

    def record(self, now: datetime, *, with_token: bool = False) -> JobRecord:
        return JobRecord(
            id=str(self.id),
            name=self.name,
            handler=self.handler,
            queue=self.queue,
            priority=self.priority,
            run_at=self.run_at,
            attempts=self.attempts,
            state=self.state(now),
            created_at=self.created_at,
            updated_at=self.updated_at,
            locked_at=self.locked_at,
            locked_by=self.locked_by,
            lock_expires_at=self.lock_expires_at,
            lock_token=self.lock_token if with_token else None,
            last_error=self.last_error,
            failed_at=self.failed_at,
            completed_at=self.completed_at,
            unique_key=self.unique_key,
            cancelled_at=self.cancelled_at,
            limit_key=self.limit_key,
        )

    def unlock(self) -> None:
        self.locked_at = self.locked_by = self.lock_expires_at = self.lock_token = None


class MemoryAdapter(
    Adapter,
    RecurringStore,
    Cancellation,
    FlowControl,
    WorkerRegistry,
    ThroughputHistory,
    JobSearch,
):
    """Jobs in a dict guarded by one lock. Nothing survives the process."""

    schemes = ("memory",)
    capabilities = Capabilities(wakeup=True, multiprocess=False, unique=True)

    def __init__(self) -> None:
        self._rows: dict[int, _Row] = {}
        # (queue, unique key) -> id of the waiting or running job that holds it
        self._unique: dict[tuple[str, str], int] = {}
        self._ticks: dict[str, datetime] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._work_added = threading.Condition(self._lock)
        self._clock_offset = timedelta(0)
        self._paused: set[str] = set()
        # (queue, limit key) -> its recent starts
        self._starts: dict[tuple[str, str], collections.deque[datetime]] = {}
        self._workers: dict[str, tuple[str, datetime, float]] = {}  # id -> (record, beat, ttl)
        self._stats: dict[tuple[datetime, str, str], MinuteStats] = {}

    @classmethod
    def from_url(cls, url: str) -> MemoryAdapter:
        return cls()

    def now(self) -> datetime:
        return datetime.now(UTC) + self._clock_offset

    def advance(self, seconds: float) -> None:
        """Move this store's clock forward, for tests: scheduled jobs fall due and leases
        lapse as if ``seconds`` had passed."""
        if not seconds >= 0:
            raise ValueError(f"the clock only moves forward; {seconds!r} is not >= 0")
        with self._lock:
            self._clock_offset += timedelta(seconds=seconds)
            self._work_added.notify_all()

    def schedule(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        with self._lock:
            now = self.now()
            records = [self._insert(job, now)[0] for job in jobs]
            self._work_added.notify_all()
            return records

    def _insert(self, job: NewJob, now: datetime) -> tuple[JobRecord, bool]:
        """Store ``job`` unless its unique key is held; ``(record, stored)``."""
        holder = self._unique.get((job.queue, job.unique_key or ""))
        if job.unique_key is not None and holder is not None:
            return self._rows[holder].record(now), False
        run_at = job.run_at if job.run_at is not None else now + timedelta(seconds=job.delay)
        row = _Row(
            id=next(self._ids),
            name=job.name,
            handler=job.handler,
            queue=job.queue,
            priority=job.priority,
            run_at=run_at,
            created_at=now,
            updated_at=now,
            unique_key=job.unique_key,
            limit_key=job.limit_key,
            max_concurrency=job.max_concurrency,
            rate_limit=job.rate_limit,
        )
        self._rows[row.id] = row
        if job.unique_key is not None:
            self._unique[job.queue, job.unique_key] = row.id
        return row.record(now), True

    def _free_unique_key(self, row: _Row) -> None:
        if row.unique_key is not None:
            self._unique.pop((row.queue, row.unique_key), None)
            row.unique_key = None

    def _remove(self, row: _Row) -> None:
        self._free_unique_key(row)
        del self._rows[row.id]

    def schedule_tick(
        self, key: str, tick: datetime, job: NewJob, *, store: bool = True
    ) -> JobRecord | None:
        with self._lock:
            last = self._ticks.get(key)
            if last is not None and last >= tick:
                return None
            self._ticks[key] = tick
            if not store:
                return None
            record, stored = self._insert(job, self.now())
            self._work_added.notify_all()
            return record if stored else None

    def recurring_ticks(self) -> dict[str, datetime]:
        with self._lock:
            return dict(self._ticks)

    def claim(
        self,
        worker_id: str,
        queues: Sequence[str] | None,
        *,
        limit: int = 1,
        lease: float,
    ) -> list[JobRecord]:
        with self._lock:
            now = self.now()
            wanted = None if queues is None else set(queues)
            candidates = sorted(
                (
                    row
                    for row in self._rows.values()
                    if (wanted is None or row.queue in wanted)
                    and row.queue not in self._paused
                    and row.claimable(now)
                ),
                key=lambda row: (row.priority, row.run_at, row.id),
            )
            running = collections.Counter(
                (row.queue, row.limit_key)
                for row in self._rows.values()
                if row.limit_key is not None and row.lock_is_live(now)
            )
            claimed: list[JobRecord] = []
            for row in candidates:
                if len(claimed) == limit:
                    break
                if not self._within_limits(row, running, now):
                    continue
                if row.locked_by is not None:
                    row.last_error = reclaim_note(row.locked_by, row.lock_expires_at)
                row.attempts += 1
                row.locked_at = now
                row.locked_by = worker_id
                row.lock_expires_at = now + timedelta(seconds=lease)
                row.lock_token = uuid.uuid4().hex
                row.updated_at = now
                claimed.append(row.record(now, with_token=True))
            return claimed

    def _within_limits(
        self, row: _Row, running: collections.Counter[tuple[str, str]], now: datetime
    ) -> bool:
        """Whether ``row`` may start now under its key's limits; if so, count its start."""
        if row.limit_key is None:
            return True
        key = (row.queue, row.limit_key)
        if row.max_concurrency is not None and running[key] >= row.max_concurrency:
            return False
        if row.rate_limit is not None:
            starts = self._starts.setdefault(key, collections.deque())
            window_start = now - timedelta(seconds=row.rate_limit.per)
            while starts and starts[0] <= window_start:
                starts.popleft()
            if len(starts) >= row.rate_limit.count:
                return False
            starts.append(now)
        running[key] += 1
        return True

    # -- flow control -------------------------------------------------------------------------

    def pause(self, queue: str) -> bool:
        with self._lock:
            was = queue in self._paused
            self._paused.add(queue)
            return not was

    def resume(self, queue: str) -> bool:
        with self._lock:
            was = queue in self._paused
            self._paused.discard(queue)
            self._work_added.notify_all()
            return was

    def paused_queues(self) -> set[str]:
        with self._lock:
            return set(self._paused)

    # -- the worker registry and throughput history ---------------------------------------------

    def beat(self, worker: WorkerInfo, *, ttl: float, stats: Sequence[MinuteStats] = ()) -> None:
        with self._lock:
            now = self.now()
            self._workers[worker.id] = (worker.to_json(), now, ttl)
        if stats:
            self.add_stats(stats)

    def retire(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            now = self.now()
            found = []
            for worker_id, (text, beat_at, ttl) in list(self._workers.items()):
                silent = (now - beat_at).total_seconds()
                if silent > ttl + self.lost_kept:
                    del self._workers[worker_id]
                    continue
                found.append(WorkerInfo.from_json(text, beat_at=beat_at, lost=silent > ttl))
        return sorted(found, key=lambda worker: (worker.host, worker.id))

    def add_stats(self, stats: Sequence[MinuteStats]) -> None:
        with self._lock:
            for tally in stats:
                key = (tally.minute, tally.queue, tally.name)
                known = self._stats.get(key)
                self._stats[key] = tally if known is None else known.merged(tally)
            oldest = self.now() - timedelta(seconds=self.retention)
            for key in [key for key in self._stats if key[0] < oldest]:
                del self._stats[key]

    def stats(self, *, since: datetime, queues: Sequence[str] | None = None) -> list[MinuteStats]:
        with self._lock:
            return [
                self._stats[key]
                for key in sorted(self._stats)
                if key[0] >= since and (queues is None or key[1] in queues)
            ]

    def _owned(self, job_id: str, lock_token: str) -> _Row | None:
        row = self._rows.get(_int_id(job_id))
        if row is None or row.lock_token is None or row.lock_token != lock_token:
            return None
        return row

    def complete(self, job_id: str, lock_token: str, *, keep: bool = False) -> bool:
        with self._lock:
            row = self._owned(job_id, lock_token)
            if row is None:
                return False
            if row.limit_key is not None:
                self._work_added.notify_all()  # a slot of its key frees
            if not keep:
                self._remove(row)
                return True
            now = self.now()
            row.unlock()
            self._free_unique_key(row)
            row.completed_at = row.updated_at = now
            return True

    def reschedule(self, job_id: str, lock_token: str, *, delay: float, error: str) -> bool:
        with self._lock:
            row = self._owned(job_id, lock_token)
            if row is None:
                return False
            now = self.now()
            row.unlock()
            row.last_error = error
            row.run_at = now + timedelta(seconds=delay)
            row.updated_at = now
            self._work_added.notify_all()
            return True

    def fail(self, job_id: str, lock_token: str, *, error: str, keep: bool = True) -> bool:
        with self._lock:
            row = self._owned(job_id, lock_token)
            if row is None:
                return False
            if row.limit_key is not None:
                self._work_added.notify_all()  # a slot of its key frees
            if not keep:
                self._remove(row)
                return True
            now = self.now()
            row.unlock()
            self._free_unique_key(row)
            row.last_error = error
            row.failed_at = row.updated_at = now
            return True

    def release(self, job_id: str, lock_token: str) -> bool:
        with self._lock:
            row = self._owned(job_id, lock_token)
            if row is None:
                return False
            row.unlock()
            row.attempts = max(0, row.attempts - 1)
            row.updated_at = self.now()
            self._work_added.notify_all()
            return True

    def extend(self, job_id: str, lock_token: str, *, lease: float) -> bool:
        with self._lock:
            row = self._owned(job_id, lock_token)
            if row is None:
                return False
            now = self.now()
            row.lock_expires_at = now + timedelta(seconds=lease)
            row.updated_at = now
            return True

    def cancel(self, job_id: str) -> CancelOutcome:
        with self._lock:
            row = self._rows.get(_int_id(job_id))
            if row is None:
                return CancelOutcome.NOT_FOUND
            now = self.now()
            if row.completed_at is not None or row.failed_at is not None:
                return CancelOutcome.FINISHED
            if row.lock_is_live(now):
                row.cancelled_at = row.cancelled_at or now
                row.updated_at = now
                return CancelOutcome.REQUESTED
            if row.cancelled_at is not None:
                return CancelOutcome.FINISHED
            row.unlock()  # a lapsed lock: its worker is gone
            self._free_unique_key(row)
            row.cancelled_at = row.updated_at = now
            return CancelOutcome.CANCELLED

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        with self._lock:
            return {
                job_id
                for job_id in job_ids
                if (row := self._rows.get(_int_id(job_id))) is not None
                and row.cancelled_at is not None
            }

    def mark_cancelled(self, job_id: str, lock_token: str, *, error: str | None = None) -> bool:
        with self._lock:
            row = self._owned(job_id, lock_token)
            if row is None:
                return False
            if row.limit_key is not None:
                self._work_added.notify_all()  # a slot of its key frees
            now = self.now()
            row.unlock()
            self._free_unique_key(row)
            row.cancelled_at = row.cancelled_at or now
            row.updated_at = now
            if error is not None:
                row.last_error = error
            return True

    def wait_for_work(self, queues: Sequence[str] | None, timeout: float) -> None:
        with self._lock:
            now = self.now()
            wanted = None if queues is None else set(queues)
            due_times = [
                at
                for row in self._rows.values()
                if (wanted is None or row.queue in wanted)
                and row.queue not in self._paused
                and not row.finished()
                and (at := self._due_at(row, now)) is not None
            ]
            if due_times:
                soonest = (min(due_times) - now).total_seconds()
                if soonest <= 0:
                    return
                timeout = min(timeout, soonest)
            self._work_added.wait(timeout)

    def _due_at(self, row: _Row, now: datetime) -> datetime | None:
        """When ``row`` can next be claimed, as far as time alone tells (``None``: when a
        run of its key ends, which notifies waiters)."""
        due = row.run_at if row.lock_expires_at is None else max(row.run_at, row.lock_expires_at)
        if row.limit_key is None or due > now:
            return due
        key = (row.queue, row.limit_key)
        if row.max_concurrency is not None:
            live = sum(
                1
                for r in self._rows.values()
                if (r.queue, r.limit_key) == key and r.lock_is_live(now)
            )
            if live >= row.max_concurrency:
                return None
        if row.rate_limit is not None:
            starts = self._starts.get(key)
            if starts and len(starts) >= row.rate_limit.count:
                return starts[-row.rate_limit.count] + timedelta(seconds=row.rate_limit.per)
        return due

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._rows.get(_int_id(job_id))
            return None if row is None else row.record(self.now())

    def list_jobs(
        self,
        *,
        queues: Sequence[str] | None = None,
        states: Sequence[JobState] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        with self._lock:
            now = self.now()
            records = [
                row.record(now)
                for row in sorted(
                    self._rows.values(),
                    key=lambda row: (row.queue, row.priority, row.run_at, row.id),
                )
                if queues is None or row.queue in queues
            ]
        if states is not None:
            records = [record for record in records if record.state in states]
        return records[offset : offset + limit]

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
        check_page_limit(limit)
        scan_limit = check_scan_limit(self.scan_limit)
        before = _int_id(cursor) if cursor is not None else None
        needle = text.casefold() if text else None
        with self._lock:
            now = self.now()
            found: list[JobRecord] = []
            looked = 0
            for row_id in sorted(self._rows, reverse=True):
                if before is not None and row_id >= before:
                    continue
                if looked == scan_limit:  # as the other stores: bounded work per page
                    return JobPage(found, str(row_id + 1))
                looked += 1
                row = self._rows[row_id]
                if queue is not None and row.queue != queue:
                    continue
                if name is not None and row.name != name:
                    continue
                if state is not None and row.state(now) is not state:
                    continue
                if (
                    needle is not None
                    and needle not in row.handler.casefold()
                    and (row.last_error is None or needle not in row.last_error.casefold())
                ):
                    continue
                if len(found) == limit:
                    return JobPage(found, str(found[-1].id))
                found.append(row.record(now))
        return JobPage(found, None)

    def counts(self) -> list[QueueCounts]:
        with self._lock:
            now = self.now()
            tally: dict[str, dict[str, int]] = {}
            for row in self._rows.values():
                per_state = tally.setdefault(row.queue, {})
                state = row.state(now).value
                per_state[state] = per_state.get(state, 0) + 1
        return [QueueCounts(queue=queue, **tally[queue]) for queue in sorted(tally)]

    def retry(self, job_id: str) -> bool:
        with self._lock:
            row = self._rows.get(_int_id(job_id))
            now = self.now()
            if row is None or row.lock_is_live(now):
                return False
            if row.locked_at is not None:  # a lapsed lock of a cancelled or dead run
                row.unlock()
            row.failed_at = row.completed_at = row.cancelled_at = None
            row.attempts = 0
            row.run_at = row.updated_at = now
            self._work_added.notify_all()
            return True

    def delete(self, job_id: str) -> bool:
        with self._lock:
            row = self._rows.get(_int_id(job_id))
            if row is None:
                return False
            self._remove(row)
            return True

    def clear(self, queues: Sequence[str] | None = None) -> int:
        with self._lock:
            doomed = [
                job_id
                for job_id, row in self._rows.items()
                if queues is None or row.queue in queues
            ]
            for job_id in doomed:
                self._remove(self._rows[job_id])
            return len(doomed)


def _int_id(job_id: str) -> int:
    try:
        return int(job_id)
    except (TypeError, ValueError):
        return -1
