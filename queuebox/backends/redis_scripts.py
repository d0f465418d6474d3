"""The Lua scripts of the Redis store: loaded from ``lua/*.lua``, called by SHA, from the sync
client or an asyncio one.

Each script of a queue is the libraries (``lib.lua``, ``lib_limits.lua``, ``lib_jobs.lua``)
followed by the script's own file (Redis has no ``require``), the libraries trimmed to the
functions the script reaches (``redis_prelude``); the scripts of the worker
registry and the throughput history touch no queue and stand alone.

On a server with Redis Functions the queue scripts are one library of functions
(``redis_functions``), called with ``FCALL``; elsewhere, and for the standalone scripts, calls
go out as ``EVALSHA``. A call refused because its script or function is not on the server
(``NOSCRIPT``, "Function not found": a restart, a failover, a flush) loads it and repeats
only the calls that were refused, which never ran.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)

from queuebox.backends.redis_functions import (
    Library,
    aload_library,
    build_library,
    is_missing,
    load_library,
)
from queuebox.backends.redis_prelude import needed_prelude
from queuebox.backends.redis_wire import AsyncDirectCalls, DirectCalls, Unreachable

__all__ = [
    "LIBRARIES",
    "REDIRECTIONS",
    "SCRIPT_NAMES",
    "STANDALONE_NAMES",
    "AsyncScriptRunner",
    "Call",
    "PendingCalls",
    "Script",
    "ScriptRunner",
    "load_scripts",
    "sort_replies",
]

#: Prepended, in this order, to every script of a queue.
LIBRARIES = ("lib.lua", "lib_limits.lua", "lib_jobs.lua")
#: Scripts on one queue's keys.
QUEUE_SCRIPT_NAMES = (
    "enqueue",
    "tick",
    "claim",
    "peek",
    "complete",
    "complete_many",
    "reschedule",
    "fail",
    "release",
    "extend_many",
    "cancel",
    "mark_cancelled",
    "retry",
    "delete",
    "clear",
    "counts",
    "due",
    "pause",
    "upgrade",
    "search",
    "stats_add",
    "stats_read",
)
#: Scripts that stand alone (no queue's keys, no libraries).
STANDALONE_NAMES = ("worker_beat", "worker_list")
SCRIPT_NAMES = QUEUE_SCRIPT_NAMES + STANDALONE_NAMES

REDIRECTIONS = (MovedError, AskError, TryAgainError, ClusterDownError)
_ATTEMPTS = 3  # NOSCRIPT reloads in a row before giving up (a server flushing its scripts)
_KEPT_DISAPPEARING = "scripts kept disappearing from the server while being called"

#: One script call: (script name, keys, arguments).
Call = tuple[str, Sequence[str], Sequence[bytes | str | int]]


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str


def _read(filename: str) -> str:
    return (
        importlib.resources.files("queuebox.backends")
        .joinpath("lua", filename)
        .read_text(encoding="utf-8")
    )


def queue_library() -> Library:
    """The Functions library of the queue scripts (``redis_functions``)."""
    library = "\n".join(_read(name) for name in LIBRARIES)
    return build_library(library, {name: _read(name + ".lua") for name in QUEUE_SCRIPT_NAMES})


def load_scripts() -> dict[str, Script]:
    library = "\n".join(_read(name) for name in LIBRARIES)
    scripts = {}
    for name in SCRIPT_NAMES:
        own = _read(name + ".lua")
        if name not in STANDALONE_NAMES:
            own = f"bind(KEYS)\n{own}"
            own = f"{needed_prelude(library, own)}\n{own}"
        source = own
        sha = hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest()
        scripts[name] = Script(name, source, sha)
    return scripts


class ScriptRunner:
    """Runs scripts on one client (``redis.Redis`` or ``redis.cluster.RedisCluster``)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.scripts = load_scripts()
        self.library = queue_library()
        #: Whether queue scripts are called as Functions; ``None`` until the server answered
        #: ``FUNCTION LOAD`` (at the first call), ``False`` for one without them.
        self.functions: bool | None = None
        self._direct = DirectCalls.of(client)

    def head(self, name: str) -> tuple[str, str]:
        """How a call of script ``name`` opens: ``("FCALL", function)`` or ``("EVALSHA",
        sha)``; the first call of a process asks the server whether it has Functions."""
        if self.functions is None:
            self.functions = load_library(self._client, self.library)
        return head_of(self, name)

    def _load(self, name: str, client: Any = None) -> None:
        """Load what a call of ``name`` needs; a server that no longer takes the library
        (its Functions refused now) gets the script for ``EVALSHA`` from then on."""
        client = self._client if client is None else client
        if self.functions and name in self.library.functions:
            self.functions = load_library(client, self.library)
        if not self.functions or name not in self.library.functions:
            client.script_load(self.scripts[name].source)

    def load_all(self) -> None:
        self.functions = load_library(self._client, self.library)
        for name in self.scripts:
            self._client.script_load(self.scripts[name].source)

    def call(self, name: str, keys: Sequence[str], args: Sequence[bytes | str | int]) -> Any:
        head = self.head(name)
        if self._direct is not None:
            try:
                return self._direct.call(head, keys, args)
            except ResponseError as exc:
                if not isinstance(exc, REDIRECTIONS) and not is_missing(exc):
                    raise
                if is_missing(exc):
                    self._load(name)
                    head = head_of(self, name)
            except Unreachable:
                pass  # through the client: its retries
        try:
            return self._client.execute_command(*head, len(keys), *keys, *args)
        except ResponseError as exc:
            if not is_missing(exc):
                raise
            self._load(name)
            head = head_of(self, name)
            return self._client.execute_command(*head, len(keys), *keys, *args)

    def call_many(self, calls: Sequence[Call]) -> list[Any]:
        """Run ``calls`` pipelined, one round trip per Redis node; results in order."""
        if len(calls) == 1:
            name, keys, args = calls[0]
            return [self.call(name, keys, args)]
        results: list[Any] = [None] * len(calls)
        if not isinstance(self._client, RedisCluster):
            self._pipeline(self._client, calls, range(len(calls)), results)
            return results
        # redis-py refuses EVALSHA in cluster pipelines: pipeline per node ourselves.
        cluster: Any = self._client
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for index, (_, keys, _) in enumerate(calls):
            node = cluster.get_node_from_key(keys[0])
            by_node.setdefault(node.name, (node, []))[1].append(index)
        for node, indexes in by_node.values():
            connection = cluster.get_redis_connection(node)
            moved = self._pipeline(connection, calls, indexes, results, per_node=True)
            for index in moved:  # slots moved meanwhile: let the cluster client follow
                name, keys, args = calls[index]
                results[index] = self.call(name, keys, args)
        return results

    def send_many(self, calls: Sequence[Call]) -> PendingCalls:
        """Send ``calls`` (all on keys of one hash slot) and return at once; the replies are
        read by ``PendingCalls.read()``, which holds a connection of the pool until then.

        This is a pipeline split in two halves, so that the caller works while Redis does.
        """
        client = self._client
        if isinstance(client, RedisCluster):  # one slot, so one node: its own connections
            cluster: Any = client
            client = cluster.get_redis_connection(cluster.get_node_from_key(calls[0][1][0]))
        pool = client.connection_pool
        connection = pool.get_connection()
        commands = [(*self.head(name), len(keys), *keys, *args) for name, keys, args in calls]
        try:
            connection.send_packed_command(connection.pack_commands(commands))
        except BaseException:
            pool.release(connection)  # send_packed_command disconnected it on error
            raise
        return PendingCalls(self, calls, pool, connection)

    def _pipeline(
        self,
        client: Any,
        calls: Sequence[Call],
        indexes: Sequence[int],
        results: list[Any],
        *,
        per_node: bool = False,
    ) -> list[int]:
        """Fill ``results`` for ``indexes``; return those refused by a cluster redirection."""
        pending = list(indexes)
        for _ in range(_ATTEMPTS):
            pipe = client.pipeline(transaction=False)
            for index in pending:
                name, keys, args = calls[index]
                pipe.execute_command(*self.head(name), len(keys), *keys, *args)
            replies = pipe.execute(raise_on_error=False)
            refused, redirected = sort_replies(calls, pending, replies, results, per_node)
            if not refused:
                return redirected
            for name in sorted({calls[index][0] for index in refused}):
                self._load(name, client)
            pending = refused
        raise NoScriptError(_KEPT_DISAPPEARING)


def sort_replies(
    calls: Sequence[Call],
    pending: Sequence[int],
    replies: Sequence[Any],
    results: list[Any],
    per_node: bool,
) -> tuple[list[int], list[int]]:
    """Put the replies to the ``pending`` calls in ``results``; return the calls refused with
    NOSCRIPT (they never ran: load their scripts and send them again) and, ``per_node``
    (calls sent straight to a node of a cluster), those refused by a redirection (the slot
    moved: send them through the cluster client). Any other error is raised."""
    refused, redirected = [], []
    for index, reply in zip(pending, replies, strict=True):
        if is_missing(reply):
            refused.append(index)
        elif per_node and isinstance(reply, REDIRECTIONS):
            redirected.append(index)
        elif isinstance(reply, Exception):
            raise reply
        else:
            results[index] = reply
    return refused, redirected


class PendingCalls:
    """Script calls sent by ``ScriptRunner.send_many`` whose replies are not read yet."""

    def __init__(self, runner: ScriptRunner, calls: Sequence[Call], pool: Any, connection: Any):
        self._runner = runner
        self._calls = calls
        self._pool = pool
        self._connection: Any = connection

    def read(self) -> list[Any]:
        """The replies, in order. Calls refused with NOSCRIPT or a cluster redirection never
        ran: they are run again the usual way (``ScriptRunner.call``)."""
        connection, self._connection = self._connection, None
        if connection is None:
            raise RuntimeError("these replies were read already")
        replies: list[Any] = []
        try:
            for _ in self._calls:
                try:
                    replies.append(connection.read_response())
                except ResponseError as exc:  # one call's error; the next replies follow
                    replies.append(exc)
        except BaseException:
            connection.disconnect()  # replies may be left unread: never reuse it
            raise
        finally:
            self._pool.release(connection)
        for index, reply in enumerate(replies):
            if is_missing(reply) or isinstance(reply, REDIRECTIONS):
                name, keys, args = self._calls[index]
                replies[index] = self._runner.call(name, keys, args)
            elif isinstance(reply, Exception):
                raise reply
        return replies


class AsyncScriptRunner:
    """``ScriptRunner.call_many`` on an asyncio client (``redis.asyncio.Redis`` or its
    ``RedisCluster``): the same calls, the same replies, reloads included, and the sync
    runner's scripts, library and answer about Functions. On a cluster each call goes
    through the cluster client, which routes it by its first key and follows redirections
    itself; on one server the calls are one pipeline."""

    def __init__(self, runner: ScriptRunner) -> None:
        self._runner = runner
        self.scripts = runner.scripts
        self._heads: dict[Any, bytes] = {}  # packed command heads, shared by every loop's client
        self._direct: tuple[Any, AsyncDirectCalls | None] | None = None  # the last client's

    async def _head(self, client: Any, name: str) -> tuple[str, str]:
        runner = self._runner
        if runner.functions is None:
            runner.functions = await aload_library(client, runner.library)
        return head_of(self, name)

    async def _load(self, client: Any, name: str) -> None:
        runner = self._runner
        if runner.functions and name in runner.library.functions:
            runner.functions = await aload_library(client, runner.library)
        if not runner.functions or name not in runner.library.functions:
            await client.script_load(self.scripts[name].source)

    async def call(
        self, client: Any, name: str, keys: Sequence[str], args: Sequence[bytes | str | int]
    ) -> Any:
        """One call: written straight on a connection of ``client`` (``redis_wire``), else
        (a cluster, a connection that failed, a flushed script cache) as ``call_many``."""
        direct = self._direct
        if direct is None or direct[0] is not client:
            direct = self._direct = (client, AsyncDirectCalls.of(client, self._heads))
        if direct[1] is not None:
            head = await self._head(client, name)
            try:
                return await direct[1].acall(head, keys, args)
            except ResponseError as exc:
                if not is_missing(exc):
                    raise
            except Unreachable:
                pass  # the usual way: it reloads the script, or has the client retry
        return (await self.call_many(client, [(name, keys, args)]))[0]

    async def call_many(self, client: Any, calls: Sequence[Call]) -> list[Any]:
        results: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        for _ in range(_ATTEMPTS):
            replies = await self._send(client, [calls[index] for index in pending])
            refused, _ = sort_replies(calls, pending, replies, results, per_node=False)
            if not refused:
                return results
            for name in sorted({calls[index][0] for index in refused}):
                await self._load(client, name)
            pending = refused
        raise NoScriptError(_KEPT_DISAPPEARING)

    async def _send(self, client: Any, calls: Sequence[Call]) -> list[Any]:
        commands: list[tuple[Any, ...]] = [
            (*(await self._head(client, name)), len(keys), *keys, *args)
            for name, keys, args in calls
        ]
        if isinstance(client, AsyncRedisCluster):
            replies = await asyncio.gather(
                *(client.execute_command(*command) for command in commands),
                return_exceptions=True,
            )
            for reply in replies:
                if isinstance(reply, BaseException) and not isinstance(reply, Exception):
                    raise reply  # a cancellation, not a reply
            return list(replies)
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        replies = await pipe.execute(raise_on_error=False)
        return list(replies)


def head_of(runner: ScriptRunner | AsyncScriptRunner, name: str) -> tuple[str, str]:
    """The command a call of ``name`` opens with, by what the runner knows now."""
    library = runner.library if isinstance(runner, ScriptRunner) else runner._runner.library
    functions = runner.functions if isinstance(runner, ScriptRunner) else runner._runner.functions
    function = library.functions.get(name) if functions else None
    if function is not None:
        return ("FCALL", function)
    return ("EVALSHA", runner.scripts[name].sha)
