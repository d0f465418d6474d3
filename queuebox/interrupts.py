"""What a running job sees raised when its worker stops it on purpose.

Both are ``BaseException`` subclasses, as ``asyncio.CancelledError`` is, so that a job's own
``except Exception`` does not swallow them and go on running. A sync job gets them raised
inside its thread (at the next Python instruction it runs, so not inside a blocking C call).
An async job gets its task cancelled, the asyncio way: it sees ``asyncio.CancelledError``
(whose message names the reason, ``"JobCancelled"`` or ``"JobTimeout"``), and the worker
records the reason. Either way ``self.cancelled`` is already true when a cancel stops it.
"""

from __future__ import annotations

__all__ = ["JobCancelled", "JobInterrupted", "JobTimeout"]


class JobInterrupted(BaseException):
    """Base of the interruptions a worker raises inside a job."""


class JobTimeout(JobInterrupted):
    """The run took longer than its ``max_runtime``; it is retried with backoff like any
    error."""


class JobCancelled(JobInterrupted):
    """The job was cancelled (``queuebox.cancel``) while it ran; it is kept as cancelled and
    never retried. A job may also raise it to cancel itself."""
