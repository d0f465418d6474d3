"""Tallies of what a worker's runs did, per queue, job name and minute, handed to the store
with the worker's registry beat (a few seconds apart, never a round trip per job).

A finished run costs one tuple appended to a list; the heartbeat's thread folds the list into
``MinuteStats`` when it beats.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from queuebox.backends.base import RUNTIME_BUCKETS, MinuteStats

__all__ = ["OUTCOMES", "StatsCollector"]

#: The outcomes a tally counts, in ``MinuteStats`` field order.
OUTCOMES = ("succeeded", "retried", "failed", "cancelled")
_INDEX = {name: index for index, name in enumerate(OUTCOMES)}
_KEPT = 10_000  # undelivered minute tallies kept while the store is unreachable


class StatsCollector:
    def __init__(self) -> None:
        self._runs: list[tuple[str, str, float, int, float]] = []
        self._pending: list[MinuteStats] = []  # folded, not yet delivered
        self._lock = threading.Lock()

    def add(self, queue: str, name: str, outcome: str, elapsed: float) -> None:
        """One finished run (``outcome`` one of ``OUTCOMES``), timed ``elapsed`` seconds."""
        run = (queue, name, time.time(), _INDEX[outcome], elapsed)
        with self._lock:
            self._runs.append(run)

    def add_successes(self, runs: Sequence[tuple[str, str, float]]) -> None:
        """Successful runs, each ``(queue, name, elapsed)``, finished about now (a batch's
        acknowledgement: one clock read and one lock for all of them)."""
        at = time.time()
        index = _INDEX["succeeded"]
        batch = [(queue, name, at, index, elapsed) for queue, name, elapsed in runs]
        with self._lock:
            self._runs.extend(batch)

    def take(self) -> list[MinuteStats]:
        """Everything added since the last call, folded per minute, queue and name."""
        with self._lock:
            runs, self._runs = self._runs, []
        folded: dict[tuple[int, str, str], list[float]] = {}
        buckets = len(RUNTIME_BUCKETS) + 1
        for queue, name, at, outcome, elapsed in runs:
            key = (int(at // 60), queue, name)
            tally = folded.get(key)
            if tally is None:
                tally = folded[key] = [0.0] * (4 + buckets + 1)
            tally[outcome] += 1
            tally[4 + bisect.bisect_left(RUNTIME_BUCKETS, elapsed)] += 1
            tally[-1] += elapsed
        return [
            MinuteStats(
                queue,
                name,
                datetime.fromtimestamp(minute * 60, UTC),
                succeeded=int(tally[0]),
                retried=int(tally[1]),
                failed=int(tally[2]),
                cancelled=int(tally[3]),
                runtime_counts=tuple(int(count) for count in tally[4:-1]),
                runtime_sum=tally[-1],
            )
            for (minute, queue, name), tally in sorted(folded.items())
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
