"""RQ jobs of the benchmarks (RQ imports them by dotted path)."""

from __future__ import annotations

from benchmarks import marks


def noop(i: int) -> None:
    marks.mark()


def ping(seq: int) -> None:
    marks.stamp(seq)


def wait(i: int) -> None:
    marks.wait_then_mark()
