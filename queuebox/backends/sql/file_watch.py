"""Wake an idle SQLite worker the moment another process commits, for no cost to the writer.

Every commit to a SQLite database writes its file: the ``-wal`` file in WAL mode, the
database file itself (and its ``-journal``) otherwise. On Linux, inotify reports those writes
to a watcher as they happen, so the worker waits on its inotify descriptor instead of
reading ``PRAGMA data_version`` ten times a second: a job scheduled by another process is
seen within a millisecond or two, and an idle worker wakes far less often than it did.

A write event is only a hint: the commit counter (``PRAGMA data_version``) still decides
whether anything was committed, and it is also read every ``SAFETY_POLL`` seconds, so a write
that inotify cannot see (a database on a network file system, a writer in another mount
namespace) is noticed as before, only later. Where inotify is missing (not Linux, or the
watch limit reached) the plain counter poll is used.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import struct
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from queuebox.backends.sql.waiting import ChangeCounterWatch, ChangeWatch, Wake

__all__ = ["FileChangeWatch", "watch_database_file"]

_log = logging.getLogger("queuebox.backends.sql")

#: How often the commit counter is read even without a write event, in seconds.
SAFETY_POLL = 1.0
#: The least time between two reads of the counter: a store busy with other queues' commits
#: must not have its idle workers read the counter (and the next due time) once per commit.
MIN_CHECK_INTERVAL = 0.005
#: How long after a write event the counter is read again while it shows no change.
RECHECK = 0.1
#: How long after a write event the counter is read every 0.5 ms: a commit's fsync.
FSYNC_WINDOW = 0.02

_IN_MODIFY = 0x002
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    # The symbols the process already loaded (libc among them), not
    # ``ctypes.util.find_library("c")``: that runs ``ldconfig -p`` in a child process, a fork of
    # a threaded worker every time a worker opens its watch.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1, libc.inotify_add_watch  # noqa: B018 - fails where they are missing
    except (OSError, AttributeError):
        return None
    return libc


class FileChangeWatch(ChangeCounterWatch):
    """``ChangeCounterWatch`` woken by inotify events on the database's files."""

    def __init__(self, fd: int, names: frozenset[bytes], read: Callable[[], object]) -> None:
        super().__init__(read)
        self._fd = fd
        self._names = names
        self._checked = 0.0
        self._closed = threading.Event()
        # close() writes here to end a wait in another thread before the descriptors go.
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def _written(self) -> bool:
        """Read every pending event; whether one was a write to the database's files."""
        written = False
        while True:
            try:
                data = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return written
            offset = 0
            while offset + _EVENT.size <= len(data):
                _, _, _, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
                written = written or name in self._names
                offset += _EVENT.size + length

    def wait(self, queues: frozenset[str] | None, until: float) -> Wake:
        # The event comes as the commit writes its frames; the commit shows in the counter a
        # moment later (the WAL index lives in shared memory, whose update makes no event).
        # With synchronous=FULL the WAL is fsynced in between. So after an event the counter
        # is read at once, then every 0.5 ms while an fsync may last (FSYNC_WINDOW), then
        # less and less often up to RECHECK seconds, before the wait goes back to the
        # safety poll.
        next_check = time.monotonic() + SAFETY_POLL
        event_at = recheck_until = step = 0.0
        while (now := time.monotonic()) < until:
            ready, _, _ = select.select(
                [self._fd, self._wake_read], [], [], max(0.0, min(until, next_check) - now)
            )
            if self._closed.is_set():
                return Wake.TIMEOUT
            now = time.monotonic()
            if ready and self._written():
                if now >= recheck_until:  # a new burst (within one, its checks go on)
                    event_at, step = now, 0.0005
                    next_check = max(now, self._checked + MIN_CHECK_INTERVAL)
                recheck_until = now + RECHECK
            if now < next_check:
                continue
            self._checked = now
            value = self._read()
            if value != self._seen:
                self._seen = value
                return Wake.CHANGED
            if now < recheck_until:
                if now - event_at > FSYNC_WINDOW:
                    step = min(step * 1.5, 0.01)
                next_check = now + step
            else:
                next_check = now + SAFETY_POLL
        return Wake.TIMEOUT

    def close(self) -> None:
        if self._closed.is_set():  # closed once already: the numbers may be reused by now
            return
        self._closed.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"x")
        # A waiter holds the lock (SQLStore.wait_for_work): let it leave before the
        # descriptors close, so that it never reads a number the system has given out again.
        if not self.lock.acquire(timeout=5.0):
            _log.warning("a wait on %r did not end; its descriptors are left open", self)
            return
        try:
            for fd in (self._fd, self._wake_read, self._wake_write):
                with contextlib.suppress(OSError):
                    os.close(fd)
        finally:
            self.lock.release()


def watch_database_file(path: Path, read: Callable[[], object]) -> ChangeWatch:
    """The best watch for the SQLite database at ``path``: inotify on its folder where the
    system has it, else the plain commit-counter poll."""
    libc = _libc()
    if libc is None:
        return ChangeCounterWatch(read)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        _log.debug(
            "inotify unavailable (%s): polling the commit counter", os.strerror(ctypes.get_errno())
        )
        return ChangeCounterWatch(read)
    # The folder, not the files: the -wal and -journal files come and go with connections.
    mask = _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO
    if libc.inotify_add_watch(fd, os.fsencode(path.parent), mask) < 0:
        error = os.strerror(ctypes.get_errno())
        os.close(fd)
        _log.info("cannot watch %s for commits (%s): polling its commit counter", path, error)
        return ChangeCounterWatch(read)
    base = os.fsencode(path.name)
    names = frozenset({base, base + b"-wal", base + b"-journal"})
    return FileChangeWatch(fd, names, read)
