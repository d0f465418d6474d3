"""Store records as the JSON the dashboard's pages read.

Everything here is plain data: the pages render it with ``textContent`` only, so a job's
arguments or error reach the browser as text, never as markup.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from queuebox.backends.base import JobRecord, JobState, QueueCounts, WorkerInfo
from queuebox.errors import PayloadError
from queuebox.payload import decode_handler

__all__ = [
    "ACTIVE_STATES",
    "STATES",
    "counts_json",
    "iso",
    "job_detail",
    "job_summary",
    "parse_handler",
    "worker_json",
]

#: The states in the order the pages show them.
STATES: tuple[JobState, ...] = (
    JobState.READY,
    JobState.SCHEDULED,
    JobState.RUNNING,
    JobState.FAILED,
    JobState.CANCELLED,
    JobState.COMPLETED,
)
#: States a cancel applies to (a finished job is left as it is).
ACTIVE_STATES = frozenset({JobState.SCHEDULED, JobState.READY, JobState.RUNNING})

#: How much of the arguments a list row shows; the job page shows all of them.
PREVIEW_CHARS = 160


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def parse_handler(handler: str) -> tuple[list[Any] | None, dict[str, Any] | None]:
    """``(args, kwargs)`` of a stored handler, or ``(None, None)`` when it is not one: the
    page then shows the raw text."""
    # The worker's own decoder, so that the page reads a payload as the worker does: one
    # nested past json's limit, or holding NaN (which the JSON response cannot carry, so the
    # job's page answered 400), shows as the raw text it is.
    try:
        call = decode_handler(handler)
    except PayloadError:
        return None, None
    return call.args, call.kwargs


def _arguments_text(handler: str) -> str:
    args, kwargs = parse_handler(handler)
    if args is None and kwargs is None:
        return handler
    parts = [json.dumps(value, ensure_ascii=False) for value in args or []]
    parts += [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in (kwargs or {}).items()]
    return ", ".join(parts)


def _first_line(text: str | None) -> str | None:
    if not text:
        return None
    lines = text.strip().splitlines()
    return lines[0] if lines else None


def job_summary(job: JobRecord) -> dict[str, Any]:
    """One row of a job list."""
    arguments = _arguments_text(job.handler)
    return {
        "id": job.id,
        "name": job.name,
        "queue": job.queue,
        "state": job.state.value,
        "priority": job.priority,
        "attempts": job.attempts,
        "run_at": iso(job.run_at),
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "locked_by": job.locked_by,
        "arguments": arguments[:PREVIEW_CHARS],
        "arguments_cut": len(arguments) > PREVIEW_CHARS,
        "error": _first_line(job.last_error),
        "unreadable": job.unreadable,
    }


def _history(job: JobRecord) -> list[dict[str, Any]]:
    """What the record's times say happened, oldest first. Stores keep the latest time of
    each step (the last claim, the last error), not one row per attempt."""
    running = job.state is JobState.RUNNING
    events: list[tuple[datetime, str]] = [(job.created_at, "enqueued")]
    if job.locked_at is not None:
        who = f" by {job.locked_by}" if job.locked_by else ""
        events.append((job.locked_at, f"claimed{who} (attempt {job.attempts})"))
    if job.lock_expires_at is not None:
        events.append((job.lock_expires_at, "lease ends unless renewed"))
    if job.failed_at is not None:
        events.append((job.failed_at, "failed"))
    if job.completed_at is not None:
        events.append((job.completed_at, "completed"))
    if job.cancelled_at is not None:
        events.append((job.cancelled_at, "cancel requested" if running else "cancelled"))
    if job.state in (JobState.SCHEDULED, JobState.READY):
        label = "runs" if job.state is JobState.SCHEDULED else "due since"
        events.append((job.run_at, label))
    events.append((job.updated_at, "last change"))
    events.sort(key=lambda event: event[0])
    return [{"at": iso(at), "event": event} for at, event in events]


def job_detail(job: JobRecord, *, can_cancel: bool) -> dict[str, Any]:
    """Everything the job page shows, and which actions apply to it."""
    args, kwargs = parse_handler(job.handler)
    running = job.state is JobState.RUNNING
    return {
        **job_summary(job),
        "handler": job.handler,
        "args": args,
        "kwargs": kwargs,
        "last_error": job.last_error,
        "locked_at": iso(job.locked_at),
        "lock_expires_at": iso(job.lock_expires_at),
        "failed_at": iso(job.failed_at),
        "completed_at": iso(job.completed_at),
        "cancelled_at": iso(job.cancelled_at),
        "unique_key": job.unique_key,
        "limit_key": job.limit_key,
        "history": _history(job),
        "actions": {
            "retry": not running and job.state is not JobState.SCHEDULED,
            "run_now": job.state is JobState.SCHEDULED,
            "cancel": can_cancel and job.state in ACTIVE_STATES,
            "delete": True,
        },
    }


def counts_json(counts: QueueCounts, *, paused: bool | None) -> dict[str, Any]:
    return {
        "queue": counts.queue,
        **{state.value: getattr(counts, state.value) for state in STATES},
        "total": counts.total,
        "paused": paused,
    }


def worker_json(worker: WorkerInfo, now: datetime) -> dict[str, Any]:
    def seconds_since(moment: datetime | None) -> float | None:
        return None if moment is None else max(0.0, (now - moment).total_seconds())

    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "queues": None if worker.queues is None else list(worker.queues),
        "concurrency": worker.concurrency,
        "version": worker.version,
        "started_at": iso(worker.started_at),
        "beat_at": iso(worker.beat_at),
        "seconds_since_beat": seconds_since(worker.beat_at),
        "uptime_seconds": seconds_since(worker.started_at),
        "lost": worker.lost,
        "jobs": [
            {
                "id": job.id,
                "name": job.name,
                "queue": job.queue,
                "started_at": iso(job.started_at),
                "running_seconds": seconds_since(job.started_at),
            }
            for job in worker.jobs
        ],
    }


def hosts(workers: Sequence[WorkerInfo]) -> list[str]:
    return sorted({worker.host for worker in workers})
