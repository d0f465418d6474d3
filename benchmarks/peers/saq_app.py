"""SAQ functions and worker settings of the benchmarks."""

from __future__ import annotations

import os
from typing import Any

from saq import Queue

from benchmarks import marks
from benchmarks.peers import QUEUE_ENV, SETTING_ENV, URL_ENV


async def noop(ctx: dict[str, Any], *, i: int) -> None:
    marks.mark()


async def ping(ctx: dict[str, Any], *, seq: int) -> None:
    marks.stamp(seq)


async def wait(ctx: dict[str, Any], *, i: int) -> None:
    await marks.await_then_mark()


CONCURRENCY = {"default": 10, "io": 50}.get(os.environ.get(SETTING_ENV, ""), 100)
queue = Queue.from_url(os.environ[URL_ENV], name=os.environ[QUEUE_ENV])
settings: dict[str, Any] = {
    "queue": queue,
    "functions": [noop, ping, wait],
    "concurrency": CONCURRENCY,
}
