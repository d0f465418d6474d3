"""Every error queuebox raises, in one hierarchy.

::

    QueueboxError
    ├── ValidationError            bad input at the API; nothing was stored
    │   ├── InvalidQueueName
    │   ├── InvalidPriority
    │   ├── InvalidSchedule        wait / wait_until
    │   ├── InvalidArguments       an argument that is not a JSON value
    │   └── PayloadTooLarge
    ├── ConfigurationError         unknown URL scheme, missing app module, bad settings
    │   └── BackendNotAvailable    a store whose extra is not installed
    ├── DuplicateJobName           two job classes registered under one name
    ├── UnknownJob                 a stored job names no registered job
    ├── PayloadError               a stored payload that cannot be decoded
    ├── StorageUnavailable         the store cannot be reached (password hidden)
    └── LockLost                   a worker's lock was taken over by another worker

Messages say what was wrong and how to fix it.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "BackendNotAvailable",
    "ConfigurationError",
    "DuplicateJobName",
    "InvalidArguments",
    "InvalidPriority",
    "InvalidQueueName",
    "InvalidSchedule",
    "LockLost",
    "PayloadError",
    "PayloadTooLarge",
    "QueueboxError",
    "StorageUnavailable",
    "UnknownJob",
    "ValidationError",
    "redact_url",
]


class QueueboxError(Exception):
    """Root of every error queuebox raises on purpose."""


class ValidationError(QueueboxError, ValueError):
    """Input rejected at the API; nothing was stored."""


class InvalidQueueName(ValidationError):
    pass


class InvalidPriority(ValidationError):
    pass


class InvalidSchedule(ValidationError):
    pass


class InvalidArguments(ValidationError, TypeError):
    pass


class PayloadTooLarge(ValidationError):
    pass


class ConfigurationError(QueueboxError):
    pass


class BackendNotAvailable(ConfigurationError):
    pass


class DuplicateJobName(QueueboxError):
    pass


class UnknownJob(QueueboxError):
    pass


class PayloadError(QueueboxError):
    pass


class StorageUnavailable(QueueboxError):
    """The store could not be reached. ``url`` never holds a password."""

    def __init__(self, message: str, url: str | None = None) -> None:
        self.url = redact_url(url) if url else None
        super().__init__(message if self.url is None else f"{message} (store: {self.url})")


class LockLost(QueueboxError):
    pass


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = f"{user}:***@{host}"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
