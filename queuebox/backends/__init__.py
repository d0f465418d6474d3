"""Storage adapters, and ``from_url`` which picks one from a URL.

Each built-in scheme maps to a module imported only when a URL of that scheme is used, so
that the Redis and PostgreSQL client libraries stay optional extras.

A store that lives in another package answers its own scheme through the entry point group
``queuebox.adapters`` (the way SQLAlchemy dialects and pytest plugins are found): the entry
point's name is the scheme, its value the adapter class. In ``pyproject.toml``::

    [project.entry-points."queuebox.adapters"]
    mysql = "queuebox_mysql:MySQLAdapter"

Once that package is installed, ``from_url("mysql://...")``, ``--url``, ``QUEUEBOX_URL`` and
the config file's ``url`` all build ``MySQLAdapter.from_url(url)``. Built-in schemes always
answer with queuebox's own adapter; an entry point that claims one is ignored, with a warning.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import logging
import sys

from queuebox.backends.base import (
    Adapter,
    Capabilities,
    JobRecord,
    JobState,
    NewJob,
    QueueCounts,
)
from queuebox.errors import BackendNotAvailable, ConfigurationError, QueueboxError, scrub

__all__ = [
    "ENTRY_POINT_GROUP",
    "Adapter",
    "Capabilities",
    "JobRecord",
    "JobState",
    "NewJob",
    "QueueCounts",
    "builtin_schemes",
    "from_url",
    "installed_schemes",
]

#: The entry point group through which installed packages add store URL schemes.
ENTRY_POINT_GROUP = "queuebox.adapters"

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

_logger = logging.getLogger("queuebox.backends")


def builtin_schemes() -> tuple[str, ...]:
    """The URL schemes queuebox answers itself (they cannot be taken over)."""
    return tuple(sorted(_SCHEMES))


def installed_schemes() -> dict[str, list[str]]:
    """Schemes that installed packages add (``queuebox.adapters`` entry points): each with
    the ``"name = module:Class (distribution version)"`` that claim it, importing nothing."""
    found: dict[str, list[str]] = {}
    for entry in _entry_points():
        where = _describe(entry)
        claims = found.setdefault(entry.name.lower(), [])
        if where not in claims:  # one distribution seen twice on sys.path
            claims.append(where)
    return found


def from_url(url: str) -> Adapter:
    """Build the adapter a URL names, e.g. ``sqlite:///queuebox.db`` or ``redis://host/0``."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"{url!r} is not a store URL: use a URL such as sqlite:///queuebox.db, "
            "memory://, redis://localhost:6379/0 or postgresql://localhost/mydb"
        )
    scheme = url.partition("://")[0].lower()
    adapter_class = _builtin(scheme) if scheme in _SCHEMES else _installed(scheme, url)
    try:
        return adapter_class.from_url(url)
    except QueueboxError:
        raise
    except NotImplementedError:
        raise ConfigurationError(
            f"{adapter_class.__module__}.{adapter_class.__qualname__} answers {scheme}:// but "
            "does not override Adapter.from_url: it cannot be built from a URL"
        ) from None
    except (ValueError, TypeError, LookupError, OverflowError) as exc:
        raise ConfigurationError(
            f"cannot build the {scheme}:// store from {scrub(url, url)}: "
            f"{type(exc).__name__}: {scrub(str(exc), url)}"
        ) from None


def _builtin(scheme: str) -> type[Adapter]:
    module_name, class_name, extra = _SCHEMES[scheme]
    claims = installed_schemes().get(scheme)
    if claims:
        _logger.warning(
            "the entry point(s) %s claim the built-in store URL scheme %s://; queuebox's own "
            "adapter answers it (a built-in scheme cannot be taken over): give that adapter "
            "a scheme of its own",
            ", ".join(claims),
            scheme,
        )
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
    return adapter_class


def _installed(scheme: str, url: str) -> type[Adapter]:
    entries = {_describe(entry): entry for entry in _entry_points() if entry.name.lower() == scheme}
    if not entries:
        installed = sorted(installed_schemes())
        known = ", ".join(f"{s}://" for s in sorted({*_SCHEMES, *installed}))
        raise ConfigurationError(
            f"unknown store URL scheme {scheme!r} in {scrub(url, url)}; known schemes: {known}. "
            f"A store from another package answers its scheme once that package is installed "
            f"(entry point group {ENTRY_POINT_GROUP!r})"
        )
    if len(entries) > 1:
        raise ConfigurationError(
            f"the store URL scheme {scheme}:// is claimed by several installed packages: "
            f"{', '.join(sorted(entries))}; uninstall all but one"
        )
    [(where, entry)] = entries.items()
    try:
        loaded = entry.load()
    except Exception as exc:  # any import-time failure of someone else's package
        raise ConfigurationError(
            f"the store for {scheme}:// cannot be loaded: the entry point {where} "
            f"(group {ENTRY_POINT_GROUP!r}) raised {type(exc).__name__}: {exc}; "
            "reinstall that package or fix its entry point"
        ) from None
    if not (isinstance(loaded, type) and issubclass(loaded, Adapter)):
        raise ConfigurationError(
            f"the entry point {where} for {scheme}:// names {loaded!r}, which is not a "
            "subclass of queuebox.backends.base.Adapter"
        )
    return loaded


def _entry_points() -> tuple[importlib.metadata.EntryPoint, ...]:
    return _entry_points_on(tuple(sys.path))


@functools.lru_cache(maxsize=8)
def _entry_points_on(path: tuple[str, ...]) -> tuple[importlib.metadata.EntryPoint, ...]:
    # Reading every distribution's metadata takes about a millisecond: once per sys.path.
    return tuple(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _describe(entry: importlib.metadata.EntryPoint) -> str:
    dist = entry.dist
    owner = f" ({dist.name} {dist.version})" if dist is not None else ""
    return f"{entry.name} = {entry.value}{owner}"
