"""Tallies of what a worker's runs did, per queue, job name and minute, handed to the store
with the worker's registry beat (a few seconds apart, never a round trip per job).

A finished run costs one tuple (a batch of successes one list entry in all); the heartbeat's
thread folds them into ``MinuteStats`` when it beats.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from queuebox.backends.base import RUNTIME_BUCKETS, MinuteStats

__all__ = ["OUTCOMES", "StatsCollector"]

#: The outcomes a tally counts, in ``MinuteStats`` field order.
OUTCOMES = ("succeeded", "retried", "failed", "cancelled")
_INDEX = {name: index for index, name in enumerate(OUTCOMES)}
_SUCCEEDED = _INDEX["succeeded"]
_BUCKET_OF = functools.partial(bisect.bisect_left, RUNTIME_BUCKETS)
_KEPT = 10_000  # undelivered minute tallies kept while the store is unreachable


class StatsCollector:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock  # wall-clock seconds: tallies are kept per calendar minute
        # Each entry is one clock reading, an outcome's index and the runs it covers, each
        # (queue, name, elapsed): a batch of successes is one entry, so a run costs its tuple
        # and nothing else until the heartbeat folds them.
        self._runs: list[tuple[float, int, Sequence[tuple[str, str, float]]]] = []
        self._pending: list[MinuteStats] = []  # folded, not yet delivered
        self._lock = threading.Lock()

    def add(self, queue: str, name: str, outcome: str, elapsed: float) -> None:
        """One finished run (``outcome`` one of ``OUTCOMES``), timed ``elapsed`` seconds."""
        entry = (self._clock(), _INDEX[outcome], ((queue, name, elapsed),))
        with self._lock:
            self._runs.append(entry)

    def add_successes(self, runs: Sequence[tuple[str, str, float]]) -> None:
        """Successful runs, each ``(queue, name, elapsed)``, finished about now (a batch's
        acknowledgement: one clock read and one lock for all of them)."""
        if runs:
            entry = (self._clock(), _SUCCEEDED, runs)
            with self._lock:
                self._runs.append(entry)

    def take(self) -> list[MinuteStats]:
        """Everything added since the last call, folded per minute, queue and name."""
        with self._lock:
            entries, self._runs = self._runs, []
        # Run times per (minute, queue, name) and outcome first; then each group is counted
        # and bucketed in C (Counter over bisect), not run by run in Python.
        folded: dict[tuple[int, str, str], tuple[list[float], ...]] = {}
        for at, outcome, runs in entries:
            minute = int(at // 60)
            for queue, name, elapsed in runs:
                times = folded.get((minute, queue, name))
                if times is None:
                    times = folded[minute, queue, name] = ([], [], [], [])
                times[outcome].append(elapsed)
        return [
            _minute_stats(minute, queue, name, times)
            for (minute, queue, name), times in sorted(folded.items())
        ]

    def put_back(self, stats: list[MinuteStats]) -> None:
        """Tallies a beat could not deliver go with the next one (the newest ``_KEPT``)."""
        with self._lock:
            self._pending = [*self._pending, *stats][-_KEPT:]

    def take_all(self) -> list[MinuteStats]:
        """What a beat sends: tallies not delivered before, then the new ones."""
        with self._lock:
            pending, self._pending = self._pending, []
        return pending + self.take()


def _minute_stats(
    minute: int, queue: str, name: str, times: tuple[list[float], ...]
) -> MinuteStats:
    """One minute's tally of one queue and job name, from its run times per outcome."""
    every = list(itertools.chain.from_iterable(times))
    buckets = Counter(map(_BUCKET_OF, every))
    succeeded, retried, failed, cancelled = (len(of) for of in times)
    return MinuteStats(
        queue,
        name,
        datetime.fromtimestamp(minute * 60, UTC),
        succeeded=succeeded,
        retried=retried,
        failed=failed,
        cancelled=cancelled,
        runtime_counts=tuple(buckets[index] for index in range(len(RUNTIME_BUCKETS) + 1)),
        runtime_sum=sum(every),
    )
