"""arq: ``arq`` with its defaults (10 concurrent jobs, a poll every 0.5 s, results kept an
hour); the fastest setting runs 100 at once, polls every 10 ms and keeps no result; the I/O
setting is the fastest one without the CLI's two INFO log lines per job."""

from __future__ import annotations

import asyncio
from typing import Any

from arq import create_pool  # type: ignore[import-not-found,import-untyped,unused-ignore]
from arq.connections import RedisSettings  # type: ignore[import-not-found,import-untyped,unused-ignore]

from benchmarks.peers import PeerSubject, script


class ArqSubject(PeerSubject):
    system = "arq"
    io_kind = "async"
    store = "redis"

    def __init__(self, setting: str, url: str) -> None:
        super().__init__(setting, url)
        self.detail = {
            "default": "arq (max_jobs 10, poll 0.5 s)",
            "io": "arq max_jobs 100, poll 10 ms, keep_result 0, WARNING logs",
        }.get(setting, "arq max_jobs 100, poll 10 ms, keep_result 0")
        self.concurrency = 100 if setting == "io" else 1
        self.loop = asyncio.new_event_loop()
        self.pool: Any = self.loop.run_until_complete(
            create_pool(RedisSettings.from_dsn(url), default_queue_name=self.queue)
        )

    def enqueue_each(self, start: int, count: int) -> None:
        async def run() -> None:
            for i, job_id in zip(range(start, start + count), self.next_ids(count), strict=True):
                await self.pool.enqueue_job("noop", i, _job_id=job_id)

        self.loop.run_until_complete(run())

    def enqueue_ping(self, seq: int) -> None:
        job_id = self.next_ids(1)[0]
        self.loop.run_until_complete(self.pool.enqueue_job("ping", seq, _job_id=job_id))

    def fill_io(self, count: int) -> None:
        async def run() -> None:
            for i, job_id in zip(range(count), self.next_ids(count), strict=True):
                await self.pool.enqueue_job("wait", i, _job_id=job_id)

        self.loop.run_until_complete(run())

    def worker_argv(self) -> list[str]:
        argv = [script("arq"), "benchmarks.peers.arq_app.WorkerSettings"]
        if self.setting == "io":
            argv += ["--custom-log-dict", "benchmarks.peers.arq_app.QUIET_LOGS"]
        return argv

    def purge(self) -> None:
        self.redis_cleanup()

    def cleanup(self) -> None:
        self.redis_cleanup()
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()


def make(setting: str, url: str) -> ArqSubject:
    return ArqSubject(setting, url)
