"""Acting on stored jobs and queues from application code: ``queuebox.cancel`` /
``acancel``, and ``queuebox.pause`` / ``resume``.

The command line and the dashboard do the same through the store's declared interfaces
(``Cancellation``, ``FlowControl``).
"""

from __future__ import annotations

from queuebox import config
from queuebox.backends.base import Adapter, Cancellation, CancelOutcome, FlowControl
from queuebox.errors import ConfigurationError
from queuebox.validation import check_queue_name

__all__ = ["acancel", "cancel", "cancel_outcome", "flow_control", "pause", "resume"]


def cancel_outcome(job_id: str, *, adapter: Adapter | None = None) -> CancelOutcome:
    """Cancel one job and say what happened (see ``CancelOutcome``)."""
    store = adapter or config.get_adapter()
    if not isinstance(store, Cancellation):
        raise ConfigurationError(
            f"the {type(store).__name__} store cannot cancel jobs (it does not declare "
            "queuebox.backends.base.Cancellation)"
        )
    return store.cancel(job_id)


def cancel(job_id: str, *, adapter: Adapter | None = None) -> bool:
    """Cancel a job: a waiting one never runs; a running one is stopped by its worker within
    about a second (``self.cancelled`` turns true, then ``queuebox.JobCancelled`` is raised
    inside it) and kept as cancelled. ``False`` when the job had already ended (completed,
    failed or cancelled) or does not exist. ``queuebox retry ID`` runs a cancelled job again.
    """
    return cancel_outcome(job_id, adapter=adapter) in (
        CancelOutcome.CANCELLED,
        CancelOutcome.REQUESTED,
    )


async def acancel(job_id: str, *, adapter: Adapter | None = None) -> bool:
    """``cancel`` from async code, without blocking the event loop."""
    import asyncio  # noqa: PLC0415 - only async callers need it (import queuebox stays lean)

    return await asyncio.to_thread(cancel, job_id, adapter=adapter)


def flow_control(adapter: Adapter | None = None) -> FlowControl:
    """The configured store (or ``adapter``) as ``FlowControl``, or a clear error."""
    store = adapter or config.get_adapter()
    if not isinstance(store, FlowControl):
        raise ConfigurationError(
            f"the {type(store).__name__} store cannot pause queues or limit jobs (it does not "
            "declare queuebox.backends.base.FlowControl)"
        )
    return store


def pause(queue: str, *, adapter: Adapter | None = None) -> bool:
    """Stop every worker, on every machine, from claiming ``queue``'s jobs until ``resume``.
    Jobs are still scheduled; runs in flight finish. ``False`` if it was paused already."""
    return flow_control(adapter).pause(check_queue_name(queue))


def resume(queue: str, *, adapter: Adapter | None = None) -> bool:
    """Let workers claim ``queue``'s jobs again; ``False`` if it was not paused."""
    return flow_control(adapter).resume(check_queue_name(queue))
