"""Huey tasks of the benchmarks, on a RedisHuey named after the run's queue."""

from __future__ import annotations

import os

from huey import RedisHuey  # type: ignore[import-not-found,import-untyped,unused-ignore]

from benchmarks import marks
from benchmarks.peers import QUEUE_ENV, URL_ENV

huey = RedisHuey(name=os.environ[QUEUE_ENV], url=os.environ[URL_ENV])


@huey.task()  # type: ignore[untyped-decorator,unused-ignore]
def noop(i: int) -> None:
    marks.mark()


@huey.task()  # type: ignore[untyped-decorator,unused-ignore]
def ping(seq: int) -> None:
    marks.stamp(seq)


@huey.task()  # type: ignore[untyped-decorator,unused-ignore]
def wait(i: int) -> None:
    marks.wait_then_mark()
