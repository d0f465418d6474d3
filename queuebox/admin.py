"""Acting on stored jobs from application code: ``queuebox.cancel`` and ``queuebox.acancel``.

The command line (``queuebox cancel ID...``) and the dashboard do the same through the store's
declared ``Cancellation`` interface.
"""

from __future__ import annotations

import asyncio

from queuebox import config
from queuebox.backends.base import Adapter, Cancellation, CancelOutcome
from queuebox.errors import ConfigurationError

__all__ = ["acancel", "cancel", "cancel_outcome"]


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
    return await asyncio.to_thread(cancel, job_id, adapter=adapter)
