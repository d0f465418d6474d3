"""Riding out an unreachable store: exponential backoff with jitter, one log line when the
store goes away and one when it comes back, and a bound for callers that must give up."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from queuebox.errors import StorageUnavailable
from queuebox.runner.signals import StopFlag

__all__ = ["STOPPING_TRIES", "StoreOutage", "duration"]

_MAX_DELAY = 30.0
#: Store calls tried while stopping with the store down, before the worker lets the locks
#: lapse (the jobs then run again: at least once, never lost).
STOPPING_TRIES = 3

T = TypeVar("T")


class StoreOutage:
    def __init__(self, stop: StopFlag, logger: logging.Logger) -> None:
        self.stop = stop
        self.logger = logger
        self.since: float | None = None
        self._attempts = 0

    def down(self, exc: StorageUnavailable, give_up_after: float | None = None) -> None:
        """Back off while the store is unreachable; raise ``exc`` once it has been
        unreachable for ``give_up_after`` seconds."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
            self.logger.error("the store is unreachable, retrying: %s", exc)
        elif give_up_after is not None and now - self.since >= give_up_after:
            self.logger.error(
                "giving up: the store has been unreachable for %s: %s",
                duration(now - self.since),
                exc,
            )
            raise exc
        self._attempts += 1
        delay = min(_MAX_DELAY, 0.1 * 2 ** min(self._attempts, 10))
        self.stop.wait(delay * random.uniform(0.5, 1.0))

    def bug(self, exc: Exception, what: str, give_up_after: float | None = None) -> None:
        """A store call raised something other than StorageUnavailable: a bug in the store,
        or a record it choked on. Log it whole, and back off as for an outage."""
        self.logger.exception("the store's %s raised %s; retrying", what, type(exc).__name__)
        self.down(StorageUnavailable(f"{type(exc).__name__}: {exc}"), give_up_after)

    def back(self) -> None:
        if self.since is not None:
            self.logger.warning(
                "the store is reachable again after %s", duration(time.monotonic() - self.since)
            )
        self.since = None
        self._attempts = 0

    def retrying(self, write: Callable[[], T]) -> T:
        """``write()``, retried while the store is unreachable; when stopping, a few tries,
        then the error (a cold stop: at once)."""
        tries = 0
        while True:
            tries += 1
            try:
                result = write()
            except StorageUnavailable as exc:
                if self.stop.cold.is_set() or (self.stop.stopping and tries >= STOPPING_TRIES):
                    raise
                self.down(exc)
                continue
            self.back()
            return result


def duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    return f"{seconds / 60:.1f}min"
