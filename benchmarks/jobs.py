"""The queuebox jobs of the benchmarks; workers import this module (``--app benchmarks.jobs``)."""

from __future__ import annotations

from benchmarks import marks
from queuebox import Job

__all__ = ["QUEUE", "BenchAwait", "BenchNoop", "BenchPing", "BenchWait"]

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


class BenchWait(Job):
    """An I/O job, sync: waits 20 ms in ``time.sleep`` (on one of the worker's threads)."""

    queue = QUEUE

    def perform(self, i: int) -> None:
        marks.wait_then_mark()


class BenchAwait(Job):
    """An I/O job, async: waits 20 ms in ``asyncio.sleep`` (a task of the worker's loop)."""

    queue = QUEUE

    async def perform(self, i: int) -> None:
        await marks.await_then_mark()
