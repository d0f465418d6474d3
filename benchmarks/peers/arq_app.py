"""arq functions and worker settings of the benchmarks (runs in benchmarks/.venv-peers: arq
pins redis-py below 6)."""

from __future__ import annotations

import os
from typing import Any

from arq.connections import RedisSettings  # type: ignore[import-not-found,import-untyped,unused-ignore]

from benchmarks import marks
from benchmarks.peers import QUEUE_ENV, SETTING_ENV, URL_ENV


async def noop(ctx: dict[str, Any], i: int) -> None:
    marks.mark()


async def ping(ctx: dict[str, Any], seq: int) -> None:
    marks.stamp(seq)


async def wait(ctx: dict[str, Any], i: int) -> None:
    await marks.await_then_mark()


#: ``arq --custom-log-dict``: warnings only (the CLI logs two INFO lines per job otherwise).
QUIET_LOGS: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"arq.standard": {"level": "WARNING", "class": "logging.StreamHandler"}},
    "loggers": {"arq": {"handlers": ["arq.standard"], "level": "WARNING"}},
}


class WorkerSettings:
    functions = [noop, ping, wait]
    redis_settings = RedisSettings.from_dsn(os.environ[URL_ENV])
    queue_name = os.environ[QUEUE_ENV]
    health_check_key = f"{queue_name}:health-check"
    if os.environ.get(SETTING_ENV) != "default":
        max_jobs = 100
        keep_result = 0
        poll_delay = 0.01
