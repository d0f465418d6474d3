"""The Redis store's clients: built from a parsed URL, and their errors translated into
queuebox's: ``StorageUnavailable`` for a server that cannot be reached or cannot serve now,
``ConfigurationError`` for one that refuses what the URL asks (credentials, a database)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    AuthorizationError,
    ClusterDownError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from queuebox.backends.redis_url import RedisURL
from queuebox.errors import ConfigurationError, StorageUnavailable, redact_text

__all__ = ["UNAVAILABLE", "sync_client", "translated_errors"]

#: What redis-py raises when the server cannot be reached or cannot serve now.
UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    OutOfMemoryError,
    RedisClusterException,
)
#: What it raises when the server refuses the URL's credentials or the user's rights.
_REFUSED = (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    AuthorizationError,
    NoPermissionError,
)
_NO_SUCH_DATABASE = "DB index is out of range"
_UNKNOWN_OPTION = re.compile(r"unexpected keyword argument '(\w+)'")


@contextlib.contextmanager
def translated_errors(shown_url: str) -> Iterator[None]:
    """Translate redis-py's errors about the server into queuebox's, naming ``shown_url``
    (which holds no password); every other error passes unchanged."""
    try:
        yield
    except _REFUSED as exc:
        raise ConfigurationError(
            f"Redis at {shown_url} refused the connection: {redact_text(str(exc))}; check the "
            "user name and password in the URL and the user's ACL rules"
        ) from exc
    except UNAVAILABLE as exc:
        raise StorageUnavailable(
            f"Redis is unavailable: {redact_text(str(exc))}", url=shown_url
        ) from exc
    except ResponseError as exc:
        if _NO_SUCH_DATABASE not in str(exc):
            raise
        raise ConfigurationError(
            f"Redis at {shown_url} has no such database: a server keeps databases 0 to 15 "
            "unless its databases setting says more; use one of those"
        ) from exc


def sync_client(parsed: RedisURL) -> redis.Redis | RedisCluster:
    """The ``redis.Redis`` or ``RedisCluster`` the URL names (a cluster client connects to
    discover the nodes; a plain one connects on first use)."""
    _check_client_options(parsed)
    with translated_errors(parsed.shown):
        try:
            if parsed.cluster:
                cluster: Any = RedisCluster.from_url(parsed.client_url)
                return cluster  # type: ignore[no-any-return]
            return redis.Redis.from_url(parsed.client_url)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"bad Redis URL {parsed.shown}: {redact_text(str(exc))}"
            ) from exc


def _check_client_options(parsed: RedisURL) -> None:
    """Build (without connecting) one connection of the URL, so that an option redis-py does
    not take is refused now rather than at the first call."""
    try:
        redis.ConnectionPool.from_url(parsed.client_url).make_connection()
    except TypeError as exc:
        unknown = _UNKNOWN_OPTION.search(str(exc))
        what = f"the option {unknown.group(1)!r}" if unknown else "an option"
        scheme = parsed.shown.partition("://")[0]
        raise ConfigurationError(
            f"bad Redis URL {parsed.shown}: redis-py takes no {what} for {scheme}:// URLs "
            "(the adapter's own are prefix and registry_ttl; TLS options need rediss://)"
        ) from None
    except ValueError as exc:
        raise ConfigurationError(f"bad Redis URL {parsed.shown}: {redact_text(str(exc))}") from None
