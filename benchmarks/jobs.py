"""The queuebox jobs of the benchmarks; workers import this module (``--app benchmarks.jobs``)."""

from __future__ import annotations

from benchmarks import marks
from queuebox import Job

__all__ = ["QUEUE", "BenchNoop", "BenchPing"]

QUEUE = "bench"


class BenchNoop(Job):
    """A no-op job with one small argument; it only marks itself done."""

    queue = QUEUE

    def perform(self, i: int) -> None:
        marks.mark()


class BenchPing(Job):
    """A latency probe: its first line records when it started."""

    queue = QUEUE

    def perform(self, seq: int) -> None:
        marks.stamp(seq)
