"""arq: ``arq`` with its defaults (10 concurrent jobs, a poll every 0.5 s, results kept an
hour); the fastest setting runs 100 at once, polls every 10 ms and keeps no result."""

from __future__ import annotations

import asyncio
from typing import Any

from arq import create_pool  # type: ignore[import-not-found,import-untyped,unused-ignore]
from arq.connections import RedisSettings  # type: ignore[import-not-found,import-untyped,unused-ignore]

from benchmarks.peers import PeerSubject, script


class ArqSubject(PeerSubject):
    system = "arq"
    store = "redis"

    def __init__(self, setting: str, url: str) -> None:
        super().__init__(setting, url)
        self.detail = (
            "arq (max_jobs 10, poll 0.5 s)"
            if setting == "default"
            else "arq max_jobs 100, poll 10 ms, keep_result 0"
        )
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

    def worker_argv(self) -> list[str]:
        return [script("arq"), "benchmarks.peers.arq_app.WorkerSettings"]

    def purge(self) -> None:
        self.redis_cleanup()

    def cleanup(self) -> None:
        self.redis_cleanup()
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()


def make(setting: str, url: str) -> ArqSubject:
    return ArqSubject(setting, url)
