"""What the dashboard changes in a store: one job, one queue, or a bounded filtered list.

Blocking, like ``views``; the app runs these in a worker thread after its checks (CSRF,
origin, read-only, ``authorize``). An action the store cannot do (no ``Cancellation``, no
``FlowControl``) is refused with a message that says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from queuebox.backends.base import Adapter, Cancellation, CancelOutcome, FlowControl
from queuebox.validation import check_queue_name
from queuebox.web.views import JobFilter, Notes, iterate_jobs

__all__ = [
    "BULK_LIMIT",
    "JOB_ACTIONS",
    "QUEUE_ACTIONS",
    "ActionRefused",
    "bulk_jobs",
    "bulk_queues",
    "job_action",
    "queue_action",
]

#: The most jobs one bulk action touches; a larger list is done in several confirmed steps.
BULK_LIMIT = 1000

JOB_ACTIONS = ("retry", "run_now", "delete", "cancel")
QUEUE_ACTIONS = ("pause", "resume")


class ActionRefused(Exception):
    """The request names an action that cannot be done here; the message says why."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _job_outcome(store: Adapter, action: str, job_id: str) -> str:
    """``"done"`` or why the job was left as it was."""
    if action in ("retry", "run_now"):
        # Running now is a retry: run_at = now, attempts = 0 (a scheduled job's one attempt).
        return "done" if store.retry(job_id) else "not found, or running"
    if action == "delete":
        return "done" if store.delete(job_id) else "not found"
    if action == "cancel":
        if not isinstance(store, Cancellation):
            raise ActionRefused(Notes.CANCEL, status=409)
        outcome = store.cancel(job_id)
        return {
            CancelOutcome.CANCELLED: "done",
            CancelOutcome.REQUESTED: "requested",
            CancelOutcome.FINISHED: "had already finished",
            CancelOutcome.NOT_FOUND: "not found",
        }[outcome]
    raise ActionRefused(f"unknown job action {action!r}: use one of {', '.join(JOB_ACTIONS)}")


def job_action(store: Adapter, action: str, job_id: str) -> dict[str, Any]:
    outcome = _job_outcome(store, action, job_id)
    return {"action": action, "id": job_id, "outcome": outcome, "changed": _changed(outcome)}


def _changed(outcome: str) -> bool:
    return outcome in ("done", "requested")


def bulk_jobs(
    store: Adapter, action: str, filters: JobFilter, *, limit: int, dry_run: bool
) -> dict[str, Any]:
    """``action`` on up to ``limit`` (at most ``BULK_LIMIT``) jobs of the filtered list.

    ``dry_run`` only counts them, for the confirmation the page asks for. The list is read
    before anything changes, so an action that moves jobs out of the filter (retry moves
    failed jobs to ready) does not make it skip or repeat any.
    """
    if action not in JOB_ACTIONS:
        raise ActionRefused(f"unknown job action {action!r}: use one of {', '.join(JOB_ACTIONS)}")
    if action == "cancel" and not isinstance(store, Cancellation):
        raise ActionRefused(Notes.CANCEL, status=409)
    if not 1 <= limit <= BULK_LIMIT:
        raise ActionRefused(f"limit={limit} is out of range: from 1 to {BULK_LIMIT} jobs")
    # One more than the limit, to say whether the list goes on past it.
    ids = [job.id for job in iterate_jobs(store, filters, most=limit + 1)]
    more = len(ids) > limit
    ids = ids[:limit]
    if dry_run:
        return {"action": action, "matched": len(ids), "more": more, "dry_run": True}
    outcomes: dict[str, int] = {}
    for job_id in ids:
        outcome = _job_outcome(store, action, job_id)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    changed = sum(n for outcome, n in outcomes.items() if _changed(outcome))
    return {
        "action": action,
        "matched": len(ids),
        "changed": changed,
        "outcomes": outcomes,
        "more": more,
        "dry_run": False,
    }


def queue_action(store: Adapter, action: str, queue: str) -> dict[str, Any]:
    if not isinstance(store, FlowControl):
        raise ActionRefused(Notes.PAUSE, status=409)
    try:
        name = check_queue_name(queue)
    except ValueError as exc:
        raise ActionRefused(str(exc)) from None
    if action == "pause":
        changed = store.pause(name)
        outcome = "done" if changed else "was paused already"
    elif action == "resume":
        changed = store.resume(name)
        outcome = "done" if changed else "was not paused"
    else:
        raise ActionRefused(
            f"unknown queue action {action!r}: use one of {', '.join(QUEUE_ACTIONS)}"
        )
    return {"action": action, "queue": name, "outcome": outcome, "changed": changed}


def bulk_queues(store: Adapter, action: str, queues: Sequence[str]) -> dict[str, Any]:
    if not queues:
        raise ActionRefused("no queue given: select the queues to pause or resume")
    if len(queues) > BULK_LIMIT:
        raise ActionRefused(f"{len(queues)} queues given: at most {BULK_LIMIT} at once")
    results = [queue_action(store, action, queue) for queue in queues]
    return {
        "action": action,
        "results": results,
        "changed": sum(result["changed"] for result in results),
    }
