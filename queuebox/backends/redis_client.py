"""The Redis store's clients: built from a parsed URL, and their errors translated into
queuebox's."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from queuebox.backends.redis_url import RedisURL
from queuebox.errors import ConfigurationError, StorageUnavailable

__all__ = ["UNAVAILABLE", "sync_client", "translated_errors"]

#: What redis-py raises when the server cannot be reached or cannot serve now.
UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    RedisClusterException,
)


@contextlib.contextmanager
def translated_errors(shown_url: str) -> Iterator[None]:
    """Raise ``StorageUnavailable`` (naming ``shown_url``, which holds no password) for
    redis-py's errors of a server that cannot be reached."""
    try:
        yield
    except UNAVAILABLE as exc:
        raise StorageUnavailable(f"Redis is unavailable: {exc}", url=shown_url) from exc


def sync_client(parsed: RedisURL) -> redis.Redis | RedisCluster:
    """The ``redis.Redis`` or ``RedisCluster`` the URL names (a cluster client connects to
    discover the nodes; a plain one connects on first use)."""
    try:
        if parsed.cluster:
            cluster: Any = RedisCluster.from_url(parsed.client_url)
            return cluster  # type: ignore[no-any-return]
        return redis.Redis.from_url(parsed.client_url)
    except UNAVAILABLE as exc:
        raise StorageUnavailable(f"cannot connect to Redis: {exc}", url=parsed.shown) from exc
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"bad Redis URL {parsed.shown}: {exc}") from exc
