"""The asyncio connections of the PostgreSQL store, for ``aschedule``.

A psycopg ``AsyncConnection`` belongs to the event loop it was opened on, so each loop gets
its own, opened on first use and used by one call at a time (an insert plan may run several
statements, a transaction among them). A connection the server dropped is replaced on the
next call; a forked child never touches its parent's; a loop that ended without ``aclose``
has its connection's socket closed (the loop that could await the close is gone). As on
the blocking side, a connection the server ended while idle is noticed before the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from queuebox.backends.sql.connections import _INHERITED

__all__ = ["AsyncConnections"]


@dataclass
class _LoopConnection:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    connection: Any = None


class AsyncConnections:
    """One asyncio connection per event loop, opened by ``connect`` on first use and again
    when ``alive`` says the server ended the idle one."""

    def __init__(
        self, connect: Callable[[], Awaitable[Any]], *, alive: Callable[[Any], bool]
    ) -> None:
        self._connect, self._alive = connect, alive
        self._entries: dict[asyncio.AbstractEventLoop, _LoopConnection] = {}
        self._lock = threading.Lock()  # loops on several threads share the table
        self._pid = os.getpid()

    def _entry(self) -> _LoopConnection:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._pid != os.getpid():
                _INHERITED.extend(entry.connection for entry in self._entries.values())
                self._entries.clear()
                self._pid = os.getpid()
            for ended in [other for other in self._entries if other.is_closed()]:
                _finish(self._entries.pop(ended).connection)
            entry = self._entries.get(loop)
            if entry is None:
                entry = self._entries[loop] = _LoopConnection()
            return entry

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[Any]:
        """The running loop's connection, for this call alone until the block ends; one
        that broke during the block is dropped, and the next call opens another."""
        entry = self._entry()
        async with entry.lock:
            if entry.connection is not None and not self._alive(entry.connection):
                _finish(entry.connection)  # the server ended it while it was idle
                entry.connection = None
            if entry.connection is None:
                entry.connection = await self._connect()
            try:
                yield entry.connection
            finally:
                if entry.connection.closed:
                    entry.connection = None

    async def aclose(self) -> None:
        """Close the running loop's connection, if it has one."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._entries.pop(loop, None) if self._pid == os.getpid() else None
        if entry is not None and entry.connection is not None:
            async with entry.lock:
                with contextlib.suppress(Exception):
                    await entry.connection.close()

    def close_all(self) -> None:
        """Close every loop's connection at once, without awaiting (the adapter's
        ``close``); the next ``use`` on any loop opens a new one."""
        with self._lock:
            if self._pid != os.getpid():
                return  # the parent's connections: never close them here
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            _finish(entry.connection)

    @property
    def open_count(self) -> int:
        """How many asyncio connections this process holds open (for tests)."""
        with self._lock:
            if self._pid != os.getpid():
                return 0
            return sum(
                1
                for e in self._entries.values()
                if e.connection is not None and not e.connection.closed
            )


def _finish(connection: Any) -> None:
    """Close a connection's socket without its event loop."""
    if connection is not None:
        with contextlib.suppress(Exception):
            connection.pgconn.finish()
