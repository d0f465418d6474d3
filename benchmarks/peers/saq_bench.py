"""SAQ: ``saq`` with its default concurrency of 10; the fastest setting runs 100 at once
and enqueues jobs that keep no record after they finish (``ttl=-1``); the I/O setting runs
50 at once, with ``ttl=-1`` too."""

from __future__ import annotations

import asyncio
import importlib
from types import ModuleType
from typing import Any

from benchmarks.peers import PeerSubject, script


class SaqSubject(PeerSubject):
    system = "saq"
    io_kind = "async"
    store = "redis"

    def __init__(self, setting: str, url: str) -> None:
        super().__init__(setting, url)
        self.detail = {
            "default": "saq (concurrency 10)",
            "io": "saq concurrency 50, ttl -1",
        }.get(setting, "saq concurrency 100, ttl -1")
        self.app: ModuleType = importlib.import_module("benchmarks.peers.saq_app")
        self.concurrency = self.app.CONCURRENCY if setting == "io" else 1
        self.loop = asyncio.new_event_loop()
        self.options: dict[str, Any] = {} if setting == "default" else {"ttl": -1}
        self.loop.run_until_complete(self.app.queue.connect())

    def enqueue_each(self, start: int, count: int) -> None:
        async def run() -> None:
            for i in range(start, start + count):
                await self.app.queue.enqueue("noop", i=i, **self.options)

        self.loop.run_until_complete(run())

    def enqueue_ping(self, seq: int) -> None:
        self.loop.run_until_complete(self.app.queue.enqueue("ping", seq=seq, **self.options))

    def fill_io(self, count: int) -> None:
        async def run() -> None:
            for i in range(count):
                await self.app.queue.enqueue("wait", i=i, **self.options)

        self.loop.run_until_complete(run())

    def worker_argv(self) -> list[str]:
        return [script("saq"), "benchmarks.peers.saq_app.settings", "--workers", "1"]

    def purge(self) -> None:
        self.redis_cleanup()

    def cleanup(self) -> None:
        self.redis_cleanup()
        self.loop.run_until_complete(self.app.queue.disconnect())
        self.loop.close()


def make(setting: str, url: str) -> SaqSubject:
    return SaqSubject(setting, url)
