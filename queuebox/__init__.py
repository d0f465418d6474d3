"""queuebox: background jobs for Python.

Schedule a job with ``perform_later``; a store (SQLite by default, PostgreSQL or Redis) keeps
it; ``queuebox work`` runs it, retrying failures with ``attempts ** 4`` seconds of backoff.
"""

from __future__ import annotations

from queuebox.admin import acancel, cancel, pause, resume
from queuebox.backends import from_url
from queuebox.backends.base import (
    Adapter,
    CancelOutcome,
    JobRecord,
    JobState,
    NewJob,
    QueueCounts,
)
from queuebox.config import add_hook, configure, get_adapter, get_settings
from queuebox.errors import QueueboxError
from queuebox.interrupts import JobCancelled, JobTimeout
from queuebox.job import Job, JobFunction, JobOptions, job
from queuebox.runner.settings import WorkerSettings

__version__ = "0.1.0"

__all__ = [
    "Adapter",
    "CancelOutcome",
    "Job",
    "JobCancelled",
    "JobFunction",
    "JobOptions",
    "JobRecord",
    "JobState",
    "JobTimeout",
    "NewJob",
    "QueueCounts",
    "QueueboxError",
    "WorkerSettings",
    "__version__",
    "acancel",
    "add_hook",
    "cancel",
    "configure",
    "from_url",
    "get_adapter",
    "get_settings",
    "job",
    "pause",
    "resume",
]
