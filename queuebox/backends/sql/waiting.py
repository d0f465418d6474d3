"""How an SQL store's ``wait_for_work`` learns that something changed.

The SQL base reads when the next job of the worker's queues falls due (``next_due``) and then
waits on a ``ChangeWatch`` until that time, the caller's timeout, or a change. A dialect picks
the watch its database allows: notifications (PostgreSQL's LISTEN), a commit counter that
any connection's commit moves (SQLite's ``PRAGMA data_version``), or none (plain polling).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable

__all__ = ["ChangeCounterWatch", "ChangeWatch", "Wake", "sleep_until"]

#: How often a commit counter is read while waiting, in seconds.
COUNTER_POLL = 0.1


class Wake(enum.Enum):
    WORK = "work"  # work may be there: return to the worker at once
    CHANGED = "changed"  # something was committed: read the next due time again
    TIMEOUT = "timeout"  # the time given passed


def sleep_until(deadline: float) -> None:
    threading.Event().wait(max(0.0, deadline - time.monotonic()))


class ChangeWatch:
    """No signal at all: waits until the time given. Subclasses watch something."""

    def __init__(self) -> None:
        # One waiter at a time per watch: a notification connection is not shared.
        self.lock = threading.Lock()

    def arm(self) -> None:
        """Start watching (before the due time is read, so that no change is missed)."""

    def wait(self, queues: frozenset[str] | None, until: float) -> Wake:
        """Wait for a change that may concern ``queues`` (``None``: all), or ``until``
        (a ``time.monotonic()`` value)."""
        sleep_until(until)
        return Wake.TIMEOUT

    def close(self) -> None:
        """Release what the watch holds."""


class ChangeCounterWatch(ChangeWatch):
    """Polls ``read()``, a cheap value that changes whenever any connection commits."""

    def __init__(self, read: Callable[[], object]) -> None:
        super().__init__()
        self._read = read
        self._seen: object = None

    def arm(self) -> None:
        self._seen = self._read()

    def wait(self, queues: frozenset[str] | None, until: float) -> Wake:
        while (remaining := until - time.monotonic()) > 0:
            threading.Event().wait(min(remaining, COUNTER_POLL))
            value = self._read()
            if value != self._seen:
                self._seen = value
                return Wake.CHANGED
        return Wake.TIMEOUT
