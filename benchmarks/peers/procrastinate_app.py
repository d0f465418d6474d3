"""procrastinate tasks of the benchmarks, in a PostgreSQL schema of the run's own."""

from __future__ import annotations

import os

from procrastinate import App, PsycopgConnector

from benchmarks import marks
from benchmarks.peers import QUEUE_ENV, URL_ENV

QUEUE = os.environ[QUEUE_ENV]
SCHEMA = QUEUE.replace("-", "_")
app = App(
    connector=PsycopgConnector(
        conninfo=os.environ[URL_ENV], kwargs={"options": f"-c search_path={SCHEMA}"}
    )
)


@app.task(name="noop", queue=QUEUE)
async def noop(i: int) -> None:
    marks.mark()


@app.task(name="ping", queue=QUEUE)
async def ping(seq: int) -> None:
    marks.stamp(seq)


@app.task(name="wait", queue=QUEUE)
async def wait(i: int) -> None:
    await marks.await_then_mark()
