"""Celery tasks of the benchmarks, on a Redis broker with every key under the run's prefix."""

from __future__ import annotations

import os

from celery import Celery  # type: ignore[import-not-found,import-untyped,unused-ignore]

from benchmarks import marks
from benchmarks.peers import QUEUE_ENV, SETTING_ENV, URL_ENV

QUEUE = os.environ[QUEUE_ENV]
app = Celery("qbbench", broker=os.environ[URL_ENV])
app.conf.update(
    task_default_queue=QUEUE,
    broker_transport_options={"global_keyprefix": f"{QUEUE}:"},
    broker_connection_retry_on_startup=True,
    task_ignore_result=True,
)
if os.environ.get(SETTING_ENV) != "default":
    app.conf.update(worker_prefetch_multiplier=128, worker_enable_remote_control=False)


@app.task(name="noop")  # type: ignore[untyped-decorator,unused-ignore]
def noop(i: int) -> None:
    marks.mark()


@app.task(name="ping")  # type: ignore[untyped-decorator,unused-ignore]
def ping(seq: int) -> None:
    marks.stamp(seq)


@app.task(name="wait")  # type: ignore[untyped-decorator,unused-ignore]
def wait(i: int) -> None:
    marks.wait_then_mark()
