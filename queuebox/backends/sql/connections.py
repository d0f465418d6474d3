"""The connections of one SQL store: one per thread or one shared behind a lock, opened on
first use, opened again after ``close``, after the server dropped one, and in a forked child.

A forked child never uses nor closes a connection it inherited: the socket or file belongs
to the parent's session, and closing it could end that session (PostgreSQL) or checkpoint
and unlock the parent's database (SQLite). Inherited connections are pinned in
``_INHERITED`` so that the garbage collector does not close them either.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["ConnectionHolder"]

_INHERITED: list[object] = []


class ConnectionHolder:
    """Hands out the connection the calling thread may use.

    ``connect`` opens and sets up a new connection (raising when it cannot); ``alive`` says
    whether an idle connection may still be used; ``close`` closes one quietly.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        close: Callable[[Any], None],
        alive: Callable[[Any], bool],
        per_thread: bool,
        backoff: tuple[float, float] | None = None,
    ) -> None:
        self._connect, self._close, self._alive = connect, close, alive
        self.per_thread = per_thread
        # (first, longest) pause in seconds before connecting again after a failed attempt,
        # doubling on each failure: a store that is down is not hammered by every call.
        self._backoff = backoff
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.RLock()  # guards the list, and the shared connection's use
        self._local = threading.local()
        self._open: list[Any] = []
        self._shared: Any = None
        self._generation = 0
        self._failures = 0
        self._retry_at = 0.0

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            _INHERITED.extend(self._open)
            self._reset()

    @contextlib.contextmanager
    def use(self) -> Iterator[Any]:
        """The connection for this thread; with a shared connection, held for the block."""
        self._check_fork()
        if self.per_thread:
            yield self._thread_connection()
            return
        with self._lock:
            if self._shared is None or not self._alive(self._shared):
                self._drop(self._shared)
                self._shared = self._new()
            yield self._shared

    def _thread_connection(self) -> Any:
        held: tuple[int, Any] | None = getattr(self._local, "held", None)
        if held is not None and held[0] == self._generation and self._alive(held[1]):
            return held[1]
        if held is not None:
            self._drop(held[1])
        connection = self._new()
        self._local.held = (self._generation, connection)
        return connection

    def _new(self) -> Any:
        pause = self._retry_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        try:
            connection = self._connect()
        except BaseException:
            self._failures += 1
            if self._backoff is not None:
                first, longest = self._backoff
                pause = min(longest, first * 2 ** min(self._failures - 1, 10))
                self._retry_at = time.monotonic() + pause
            raise
        self._failures, self._retry_at = 0, 0.0
        with self._lock:
            self._open.append(connection)
        return connection

    def discard(self, connection: Any) -> None:
        """Forget a connection that broke; the next ``use`` opens a new one."""
        self._check_fork()
        with self._lock:
            if connection is self._shared:
                self._shared = None
        held: tuple[int, Any] | None = getattr(self._local, "held", None)
        if held is not None and held[1] is connection:
            del self._local.held
        self._drop(connection)

    def _drop(self, connection: Any) -> None:
        if connection is None:
            return
        with self._lock:
            if connection in self._open:
                self._open.remove(connection)
        self._close(connection)

    @property
    def open_count(self) -> int:
        """How many connections this process holds open (for tests and diagnostics)."""
        self._check_fork()
        with self._lock:
            return len(self._open)

    def close_all(self) -> None:
        """Close every connection of this process; other threads reconnect on next use."""
        if self._pid != os.getpid():
            return  # nothing of ours to close; the parent's connections stay pinned
        with self._lock:
            connections, self._open, self._shared = self._open, [], None
            self._generation += 1
        for connection in connections:
            self._close(connection)
