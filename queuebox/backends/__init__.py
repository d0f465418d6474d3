"""Storage adapters, and ``from_url`` which picks one from a URL.

Each scheme maps to a module imported only when a URL of that scheme is used, so that the
Redis and PostgreSQL client libraries stay optional extras.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from queuebox.backends.base import (
    Adapter,
    Capabilities,
    JobRecord,
    JobState,
    NewJob,
    QueueCounts,
)
from queuebox.errors import BackendNotAvailable, ConfigurationError, redact_url

__all__ = [
    "Adapter",
    "Capabilities",
    "JobRecord",
    "JobState",
    "NewJob",
    "QueueCounts",
    "from_url",
]

# scheme -> (module, class, pip extra that provides its client library)
_SCHEMES: dict[str, tuple[str, str, str | None]] = {
    "memory": ("queuebox.backends.memory", "MemoryAdapter", None),
    "sqlite": ("queuebox.backends.sqlite", "SQLiteAdapter", None),
    "redis": ("queuebox.backends.redis", "RedisAdapter", "redis"),
    "rediss": ("queuebox.backends.redis", "RedisAdapter", "redis"),
    "unix": ("queuebox.backends.redis", "RedisAdapter", "redis"),
    "redis+cluster": ("queuebox.backends.redis", "RedisAdapter", "redis"),
    "rediss+cluster": ("queuebox.backends.redis", "RedisAdapter", "redis"),
    "postgresql": ("queuebox.backends.postgres", "PostgresAdapter", "postgres"),
    "postgres": ("queuebox.backends.postgres", "PostgresAdapter", "postgres"),
}


def from_url(url: str) -> Adapter:
    """Build the adapter a URL names, e.g. ``sqlite:///queuebox.db`` or ``redis://host/0``."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"{url!r} is not a store URL: use a URL such as sqlite:///queuebox.db, "
            "memory://, redis://localhost:6379/0 or postgresql://localhost/mydb"
        )
    scheme = urlsplit(url).scheme.lower()
    try:
        module_name, class_name, extra = _SCHEMES[scheme]
    except KeyError:
        known = ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        raise ConfigurationError(
            f"unknown store URL scheme {scheme!r} in {redact_url(url)}; known schemes: {known}"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise BackendNotAvailable(
                f"the {scheme}:// store is not available in this version of queuebox"
            ) from None
        hint = f"pip install 'queuebox[{extra}]'" if extra else "reinstall queuebox"
        raise BackendNotAvailable(
            f"the {scheme}:// store needs the Python package {exc.name!r}, "
            f"which is not installed: {hint}"
        ) from None
    adapter_class: type[Adapter] = getattr(module, class_name)
    return adapter_class.from_url(url)
