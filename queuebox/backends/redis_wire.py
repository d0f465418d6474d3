"""One script call written straight on a pooled connection of redis-py, for the calls a
request or an idle worker waits on (an enqueue, a claim, an outcome).

``client.evalsha`` packs every argument through redis-py's encoder, then runs its retry
wrapper, its metrics recorder and its event dispatcher: on a one-job enqueue that costs more
client time than the round trip itself (``python -m benchmarks.enqueue_breakdown``). Here
the part of the command that never changes for one script and one queue (``FCALL`` and the
function, or ``EVALSHA`` and the SHA, the key count, the eleven key names) is packed once
and kept; each call packs only its arguments, writes the bytes and reads one reply, on a
connection of the client's own pool (so the pool's limits, fork check, health checks and
timeouts apply as before).

An error reply is raised as redis-py raises it (``NoScriptError``, ``MovedError``...). A
connection that fails raises ``Unreachable``: the caller then makes the same call through
the client, whose retries behave as they always did (a connection lost after the command was
sent may run it twice there, as redis-py's own retry would).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["AsyncDirectCalls", "DirectCalls", "Unreachable"]

_HEADS_MAX = 10_000  # (script, keys, argument count) heads kept packed
_PLAIN = (bytes, str, int)


class Unreachable(Exception):
    """The direct call could not be made: make it through the client instead."""


class DirectCalls:
    """Script calls (``EVALSHA`` or ``FCALL``) on the connections of ``client``'s pools;
    ``None`` from ``of`` for a client this cannot serve (one holding a single connection of
    its own)."""

    def __init__(self, client: Any, heads: dict[Any, bytes] | None = None) -> None:
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        self._heads: dict[Any, bytes] = {} if heads is None else heads

    @classmethod
    def of(cls, client: Any) -> DirectCalls | None:
        if isinstance(client, RedisCluster):
            return cls(client)
        if isinstance(client, redis.Redis) and getattr(client, "connection", None) is None:
            return cls(client)
        return None

    def _pool(self, first_key: str) -> Any:
        if not self._cluster:
            return self._client.connection_pool
        cluster = self._client  # all of one call's keys are in one slot: its node's pool
        return cluster.get_redis_connection(cluster.get_node_from_key(first_key)).connection_pool

    def _pack(
        self,
        encode: Any,
        opening: tuple[str, str],
        keys: Sequence[str],
        args: Sequence[bytes | str | int],
    ) -> bytes:
        head_key = (opening, keys if type(keys) is tuple else tuple(keys), len(args))
        head = self._heads.get(head_key)
        if head is None:
            head = _head(encode, opening, keys, len(args))
            if len(self._heads) < _HEADS_MAX:
                self._heads[head_key] = head
        parts = [head]
        for arg in args:
            data = encode(arg)
            parts.append(b"$%d\r\n" % len(data))
            parts.append(data)
            parts.append(b"\r\n")
        return b"".join(parts)

    def call(
        self, opening: tuple[str, str], keys: Sequence[str], args: Sequence[bytes | str | int]
    ) -> Any:
        """The reply of ``*opening len(keys) *keys *args`` (``opening``: ``("EVALSHA",
        sha)`` or ``("FCALL", function)``)."""
        if not all(type(arg) in _PLAIN for arg in args):  # (a bool: redis-py refuses it)
            raise Unreachable("an argument redis-py must encode")
        try:
            pool = self._pool(keys[0]) if keys else self._client.connection_pool
            connection = pool.get_connection()
        except (RedisConnectionError, RedisTimeoutError, RedisClusterException, OSError) as exc:
            raise Unreachable(str(exc)) from exc
        try:
            packed = self._pack(connection.encoder.encode, opening, keys, args)
            connection.send_packed_command([packed])
            return connection.read_response()  # an error reply is raised, the reply read
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            connection.disconnect()
            raise Unreachable(str(exc)) from exc
        except redis.exceptions.ResponseError:
            raise
        except BaseException:
            connection.disconnect()  # a reply may be left unread: never reuse it
            raise
        finally:
            pool.release(connection)


class AsyncDirectCalls(DirectCalls):
    """``DirectCalls`` on a ``redis.asyncio.Redis`` client (one server; a cluster client
    keeps its own path, which routes and follows redirections)."""

    @classmethod
    def of(cls, client: Any, heads: dict[Any, bytes] | None = None) -> AsyncDirectCalls | None:
        if isinstance(client, redis.asyncio.Redis) and not client.single_connection_client:
            return cls(client, heads)
        return None

    async def acall(
        self, opening: tuple[str, str], keys: Sequence[str], args: Sequence[bytes | str | int]
    ) -> Any:
        """``call``, awaited."""
        if not all(type(arg) in _PLAIN for arg in args):
            raise Unreachable("an argument redis-py must encode")
        pool = self._client.connection_pool
        try:
            connection = await pool.get_connection()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise Unreachable(str(exc)) from exc
        try:
            packed = self._pack(connection.encoder.encode, opening, keys, args)
            await connection.send_packed_command(packed)
            return await connection.read_response()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            await connection.disconnect()
            raise Unreachable(str(exc)) from exc
        except redis.exceptions.ResponseError:
            raise
        except BaseException:  # a cancellation mid-reply, too: never reuse the connection
            await connection.disconnect(nowait=True)
            raise
        finally:
            await pool.release(connection)


def _head(encode: Any, opening: tuple[str, str], keys: Sequence[str], arg_count: int) -> bytes:
    command, script = opening
    values = [encode(command), encode(script), b"%d" % len(keys), *(encode(key) for key in keys)]
    parts = [b"*%d\r\n" % (len(values) + arg_count)]
    for value in values:
        parts.append(b"$%d\r\n%s\r\n" % (len(value), value))
    return b"".join(parts)
