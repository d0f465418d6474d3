"""Dramatiq actors of the benchmarks, on a Redis broker under the run's own namespace."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from benchmarks import marks
from benchmarks.peers import QUEUE_ENV, URL_ENV

QUEUE = os.environ[QUEUE_ENV]
broker = RedisBroker(url=os.environ[URL_ENV], namespace=QUEUE)  # type: ignore[no-untyped-call,unused-ignore]
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop(i: int) -> None:
    marks.mark()


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def ping(seq: int) -> None:
    marks.stamp(seq)


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def wait(i: int) -> None:
    marks.wait_then_mark()
