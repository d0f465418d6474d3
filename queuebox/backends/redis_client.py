"""The Redis store's clients: built from a parsed URL, and their errors translated into
queuebox's: ``StorageUnavailable`` for a server that cannot be reached or cannot serve now,
``ConfigurationError`` for one that refuses what the URL asks (credentials, a database)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import threading
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
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

__all__ = [
    "UNAVAILABLE",
    "AsyncClients",
    "BoundedHandshakeConnection",
    "async_client",
    "database_of",
    "sync_client",
    "translated_errors",
]

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
            f"Redis is unavailable: {redact_text(str(exc))}{_tls_hint(shown_url, exc)}",
            url=shown_url,
        ) from exc
    except ResponseError as exc:
        if _NO_SUCH_DATABASE not in str(exc):
            raise
        raise ConfigurationError(
            f"Redis at {shown_url} has no such database: a server keeps databases 0 to 15 "
            "unless its databases setting says more; use one of those"
        ) from exc


def _tls_hint(shown_url: str, exc: BaseException) -> str:
    """What to check when a ``rediss://`` URL cannot connect: most often the server does not
    speak TLS, and a server without TLS never answers the handshake (a timeout), or answers
    it with a plain reply (an SSL error)."""
    if not shown_url.startswith("rediss") or isinstance(exc, (ReadOnlyError, OutOfMemoryError)):
        return ""
    return (
        "; a rediss:// URL speaks TLS: check that the server listens for TLS on that port "
        "(its tls-port), or use redis:// for a server without TLS"
    )


class BoundedHandshakeConnection(redis.SSLConnection):
    """redis-py's TLS connection with the handshake bounded by ``socket_connect_timeout``.

    redis-py runs the handshake under ``socket_timeout`` (30 s here by default, sized for a
    slow command's reply), so a ``rediss://`` URL pointed at a server without TLS, which
    never answers the handshake, held the first call for 30 s before it failed.
    """

    def _wrap_socket_with_ssl(self, sock: socket.socket) -> Any:
        sock.settimeout(self.socket_connect_timeout)
        wrapped = super()._wrap_socket_with_ssl(sock)  # type: ignore[no-untyped-call]
        wrapped.settimeout(self.socket_timeout)
        return wrapped


def sync_client(parsed: RedisURL) -> redis.Redis | RedisCluster:
    """The ``redis.Redis`` or ``RedisCluster`` the URL names (a cluster client connects to
    discover the nodes; a plain one connects on first use)."""
    _check_client_options(parsed)
    tls = parsed.client_url.startswith("rediss://")
    with translated_errors(parsed.shown):
        try:
            if parsed.cluster:
                # RedisCluster lets the URL's connection class win over the one passed, so
                # a TLS cluster is named with redis:// and the TLS class passed (the URL's
                # ssl_* options go to that class either way).
                url = "redis://" + parsed.client_url.removeprefix("rediss://") if tls else None
                cluster: Any = (
                    RedisCluster.from_url(url, connection_class=BoundedHandshakeConnection)
                    if url is not None
                    else RedisCluster.from_url(parsed.client_url)
                )
                return cluster  # type: ignore[no-any-return]
            if tls:
                return redis.Redis.from_url(
                    parsed.client_url, connection_class=BoundedHandshakeConnection
                )
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
        what = f"the option {unknown.group(1)!r}" if unknown else "an option given"
        scheme = parsed.shown.partition("://")[0]
        raise ConfigurationError(
            f"bad Redis URL {parsed.shown}: redis-py does not take {what} for {scheme}:// URLs "
            "(the adapter's own are prefix and registry_ttl; TLS options need rediss://)"
        ) from None
    except ValueError as exc:
        raise ConfigurationError(f"bad Redis URL {parsed.shown}: {redact_text(str(exc))}") from None


def database_of(client: redis.Redis | RedisCluster) -> int:
    """The database number ``client`` works in (always 0 on a cluster)."""
    if isinstance(client, RedisCluster):
        return 0
    return int(client.connection_pool.connection_kwargs.get("db") or 0)


def async_client(parsed: RedisURL) -> Any:
    """The asyncio client the URL names (``redis.asyncio``; it connects on first use)."""
    if parsed.cluster:
        return redis.asyncio.cluster.RedisCluster.from_url(parsed.client_url)
    return redis.asyncio.Redis.from_url(parsed.client_url)


#: Clients a forked child inherited from its parent: kept, never used or closed, so that
#: collecting them does not touch the parent's connections.
_INHERITED: list[Any] = []


class _LoopClient:
    """One loop's client, whether it was initialised (see ``AsyncClients.current``), and the
    async generator that closes it when the loop shuts down."""

    __slots__ = ("client", "closer", "lock", "ready")

    def __init__(self, client: Any) -> None:
        self.client, self.lock, self.ready = client, asyncio.Lock(), False
        self.closer: AsyncGenerator[None, None] | None = None


async def _close_at_shutdown(client: Any) -> AsyncGenerator[None, None]:
    """Started once in a loop, this generator stays suspended until the loop shuts its async
    generators down (``asyncio.run`` does as it ends), and closes ``client`` then, so that a
    loop that never awaited ``aclose`` leaves no connection open."""
    try:
        yield
    finally:
        await client.aclose()


class AsyncClients:
    """One asyncio client per event loop, built on first use by ``build``.

    An asyncio client belongs to the loop it first ran on, so each loop gets its own, and a
    forked child starts with none. ``aclose`` closes the running loop's client; without it,
    the client is closed when its loop shuts down its async generators (as ``asyncio.run``
    does), and dropped when a loop ended without that.
    """

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._clients: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    async def current(self) -> Any:
        """The running loop's client, initialised once before any call uses it: redis-py's
        asyncio ``RedisCluster`` breaks (``AttributeError`` on a connection) when many calls
        start at once on a client that has not discovered the cluster yet."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._pid != os.getpid():
                _INHERITED.extend(entry.client for entry in self._clients.values())
                self._clients.clear()
                self._pid = os.getpid()
            for ended in [other for other in self._clients if other.is_closed()]:
                del self._clients[ended]
            entry = self._clients.get(loop)
            if entry is None:
                entry = self._clients[loop] = _LoopClient(self._build())
        if not entry.ready:
            async with entry.lock:
                if not entry.ready:
                    await entry.client.initialize()
                    entry.closer = _close_at_shutdown(entry.client)
                    await anext(entry.closer)
                    entry.ready = True
        return entry.client

    async def aclose(self) -> None:
        """Close the running loop's client, if it has one."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._clients.pop(loop, None) if self._pid == os.getpid() else None
        if entry is None:
            return
        if entry.closer is not None:
            await entry.closer.aclose()  # closes the client
        else:
            await entry.client.aclose()
