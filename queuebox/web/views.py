"""What the dashboard reads from a store, as JSON-ready dicts.

Every function here is blocking (it talks to the store) and the app runs it in a worker
thread. Optional abilities are the store's declared interfaces, found with ``isinstance``;
what a store does not declare is left out with a note that says why, and job lists fall back
to ``list_jobs`` when the store cannot search.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from queuebox.backends.base import (
    Adapter,
    Cancellation,
    FlowControl,
    JobRecord,
    JobSearch,
    JobState,
    MinuteStats,
    QueueCounts,
    RecurringStore,
    ThroughputHistory,
    WorkerRegistry,
)
from queuebox.runner import recurring
from queuebox.web.serialize import (
    counts_json,
    iso,
    job_detail,
    job_summary,
    worker_json,
)

__all__ = [
    "FALLBACK_SCAN",
    "JobFilter",
    "Notes",
    "features",
    "find_jobs",
    "job_page",
    "jobs_page",
    "minute_totals",
    "overview",
    "recurring_page",
    "workers_page",
]

OUTCOMES = ("succeeded", "retried", "failed", "cancelled")

#: Without ``JobSearch``, the most rows one list request reads to apply the name and text
#: filters; the page then ends early with a cursor to go on from.
FALLBACK_SCAN = 2000


class Notes:
    """Why a part of the dashboard is missing: the interface the store does not declare."""

    CANCEL = "This store cannot cancel jobs (it does not declare Cancellation)."
    PAUSE = "This store cannot pause queues (it does not declare FlowControl)."
    WORKERS = (
        "This store keeps no worker registry (it does not declare WorkerRegistry): "
        "workers are not listed."
    )
    HISTORY = (
        "This store keeps no throughput history (it does not declare ThroughputHistory): no charts."
    )
    SEARCH = (
        "This store cannot search jobs (it does not declare JobSearch): lists are read with "
        "list_jobs by offset, ordered by queue and priority, and the name and text filters "
        f"look at {FALLBACK_SCAN} jobs per page at most."
    )
    RECURRING = "This store keeps no recurring ticks (it does not declare RecurringStore)."
    NO_APP = (
        "No recurring job is registered in this process: start the dashboard with --app "
        "MODULE (or QUEUEBOX_APP) to see each one's schedule and next run."
    )


def features(store: Adapter) -> dict[str, Any]:
    """Which optional parts the store supports, and a note for each it does not."""
    declared = {
        "cancel": isinstance(store, Cancellation),
        "pause": isinstance(store, FlowControl),
        "workers": isinstance(store, WorkerRegistry),
        "history": isinstance(store, ThroughputHistory),
        "search": isinstance(store, JobSearch),
        "recurring": isinstance(store, RecurringStore),
    }
    notes = {
        "cancel": Notes.CANCEL,
        "pause": Notes.PAUSE,
        "workers": Notes.WORKERS,
        "history": Notes.HISTORY,
        "search": Notes.SEARCH,
        "recurring": Notes.RECURRING,
    }
    return {
        "features": declared,
        "notes": {key: note for key, note in notes.items() if not declared[key]},
    }


# -- overview -------------------------------------------------------------------------------


def minute_totals(
    stats: list[MinuteStats], *, start: datetime, minutes: int
) -> list[dict[str, Any]]:
    """One entry per minute from ``start`` (empty minutes included), summed over queues and
    job names."""
    base = start.replace(second=0, microsecond=0)
    tallies = [dict.fromkeys(OUTCOMES, 0) for _ in range(minutes)]
    for tally in stats:
        index = int((tally.minute - base).total_seconds() // 60)
        if 0 <= index < minutes:
            for outcome in OUTCOMES:
                tallies[index][outcome] += getattr(tally, outcome)
    slots: list[dict[str, Any]] = []
    for i, counts in enumerate(tallies):
        finished = sum(counts.values())
        raised = counts["retried"] + counts["failed"]
        slots.append(
            {
                "minute": iso(base + timedelta(minutes=i)),
                **counts,
                "finished": finished,
                # Runs that raised (retried, or failed for good) among the runs that ended.
                "failure_rate": raised / finished if finished else None,
            }
        )
    return slots


def last_hour(store: Adapter, queue: str | None = None) -> list[dict[str, Any]] | None:
    if not isinstance(store, ThroughputHistory):
        return None
    now = store.now()
    start = (now - timedelta(minutes=59)).replace(second=0, microsecond=0)
    stats = store.stats(since=start, queues=None if queue is None else [queue])
    return minute_totals(stats, start=start, minutes=60)


def overview(store: Adapter) -> dict[str, Any]:
    now = store.now()
    paused = sorted(store.paused_queues()) if isinstance(store, FlowControl) else None
    queues = [
        counts_json(c, paused=None if paused is None else c.queue in paused) for c in store.counts()
    ]
    # A paused queue that holds no job still shows, so that it can be resumed.
    listed = {q["queue"] for q in queues}
    for name in paused or ():
        if name not in listed:
            queues.append(counts_json_empty(name))
    queues.sort(key=lambda q: q["queue"])
    workers = store.workers() if isinstance(store, WorkerRegistry) else None
    history = last_hour(store)
    return {
        "now": iso(now),
        "queues": queues,
        "paused": paused,
        "workers": None
        if workers is None
        else {
            "alive": sum(not w.lost for w in workers),
            "lost": sum(w.lost for w in workers),
            "hosts": len({w.host for w in workers if not w.lost}),
        },
        "history": history,
        "last_hour": None
        if history is None
        else {
            outcome: sum(minute[outcome] for minute in history)
            for outcome in ("succeeded", "retried", "failed", "cancelled", "finished")
        },
    }


def counts_json_empty(queue: str) -> dict[str, Any]:
    return counts_json(QueueCounts(queue=queue), paused=True)


# -- job lists ------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobFilter:
    """The filters of a job list (each optional)."""

    queue: str | None = None
    state: JobState | None = None
    name: str | None = None
    text: str | None = None

    def matches(self, job: JobRecord) -> bool:
        """For the fallback without ``JobSearch``: the same rules ``search_jobs`` applies."""
        if self.name is not None and job.name != self.name:
            return False
        if self.text is None:
            return True
        needle = self.text.casefold()
        return needle in job.handler.casefold() or (
            job.last_error is not None and needle in job.last_error.casefold()
        )


def find_jobs(
    store: Adapter, filters: JobFilter, *, limit: int, cursor: str | None
) -> tuple[list[JobRecord], str | None]:
    """One page of jobs matching ``filters``, and the cursor of the next one.

    With ``JobSearch`` the store pages by cursor (as fast deep as at the start). Without it,
    ``list_jobs`` pages by offset (``cursor`` is then the offset) and this applies the name
    and text filters, reading at most ``FALLBACK_SCAN`` rows per call.
    """
    if isinstance(store, JobSearch):
        page = store.search_jobs(
            queue=filters.queue,
            state=filters.state,
            name=filters.name,
            text=filters.text,
            limit=limit,
            cursor=cursor,
        )
        return page.jobs, page.next_cursor
    offset = _offset(cursor)
    found: list[JobRecord] = []
    scanned = 0
    chunk = limit if filters.name is None and filters.text is None else 200
    while scanned < FALLBACK_SCAN:
        rows = store.list_jobs(
            queues=None if filters.queue is None else [filters.queue],
            states=None if filters.state is None else [filters.state],
            limit=chunk,
            offset=offset,
        )
        for row in rows:
            offset += 1
            if filters.matches(row):
                found.append(row)
                if len(found) == limit:
                    return found, str(offset)
        scanned += len(rows)
        if len(rows) < chunk:
            return found, None
    return found, str(offset)


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit():
        raise ValueError(
            f"cursor {cursor!r} is not a page of this store's list (use the next_cursor a "
            "previous page returned)"
        )
    return int(cursor)


def iterate_jobs(store: Adapter, filters: JobFilter, *, most: int) -> Iterator[JobRecord]:
    """Up to ``most`` jobs matching ``filters``, page after page (for bulk actions)."""
    cursor: str | None = None
    given = 0
    while given < most:
        jobs, cursor = find_jobs(store, filters, limit=min(200, most - given), cursor=cursor)
        for job in jobs:
            yield job
            given += 1
        if cursor is None:
            return


def jobs_page(
    store: Adapter, filters: JobFilter, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    jobs, next_cursor = find_jobs(store, filters, limit=limit, cursor=cursor)
    return {
        "now": iso(store.now()),
        "jobs": [job_summary(job) for job in jobs],
        "next_cursor": next_cursor,
        "limit": limit,  # a shorter page with a cursor: the older jobs are not searched yet
        "searched": isinstance(store, JobSearch),
    }


def job_page(store: Adapter, job_id: str) -> dict[str, Any] | None:
    job = store.get(job_id)
    if job is None:
        return None
    return {
        "now": iso(store.now()),
        "job": job_detail(job, can_cancel=isinstance(store, Cancellation)),
    }


# -- workers and recurring jobs -------------------------------------------------------------


def workers_page(store: Adapter) -> dict[str, Any]:
    now = store.now()
    if not isinstance(store, WorkerRegistry):
        return {"now": iso(now), "workers": None}
    workers = store.workers()
    return {
        "now": iso(now),
        "workers": [worker_json(worker, now) for worker in workers],
        "hosts": sorted({worker.host for worker in workers}),
    }


def recurring_page(store: Adapter) -> dict[str, Any]:
    now = store.now()
    if not isinstance(store, RecurringStore):
        return {"now": iso(now), "recurring": None}
    registered = recurring.describe(store)
    ticks = store.recurring_ticks()
    rows = [
        {
            "name": status.name,
            "queue": status.queue,
            "schedule": status.schedule,
            "last_tick": iso(status.last_tick),
            "next_run": iso(status.next_run),
            "registered": True,
        }
        for status in registered
    ]
    known = {status.name for status in registered}
    # Ticks of recurring jobs this process has not imported: their last tick is all we know.
    rows += [
        {
            "name": key,
            "queue": None,
            "schedule": None,
            "last_tick": iso(tick),
            "next_run": None,
            "registered": False,
        }
        for key, tick in sorted(ticks.items())
        if key not in known
    ]
    return {"now": iso(now), "recurring": rows, "registered": bool(registered)}
