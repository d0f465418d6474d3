"""Huey: ``huey_consumer`` with its defaults (one thread worker, periodic tasks on, INFO
logs per task); the fastest setting turns periodic tasks and per-task logs off; the I/O
setting runs 32 worker threads (``-k thread -w 32``), also without them."""

from __future__ import annotations

import importlib
from types import ModuleType

from benchmarks.peers import PeerSubject, script


class HueySubject(PeerSubject):
    system = "huey"
    store = "redis"

    def __init__(self, setting: str, url: str) -> None:
        super().__init__(setting, url)
        self.detail = {
            "default": "huey_consumer (1 thread)",
            "io": "huey_consumer -k thread -w 32 --no-periodic --quiet",
        }.get(setting, "huey_consumer -w 1 --no-periodic --quiet")
        self.concurrency = 32 if setting == "io" else 1
        self.app: ModuleType = importlib.import_module("benchmarks.peers.huey_app")

    def enqueue_each(self, start: int, count: int) -> None:
        task = self.app.noop
        for i in range(start, start + count):
            task(i)

    def enqueue_ping(self, seq: int) -> None:
        self.app.ping(seq)

    def fill_io(self, count: int) -> None:
        task = self.app.wait
        for i in range(count):
            task(i)

    def worker_argv(self) -> list[str]:
        argv = [script("huey_consumer"), "benchmarks.peers.huey_app.huey"]
        if self.setting == "io":
            return [*argv, "-k", "thread", "-w", "32", "--no-periodic", "--quiet"]
        if self.setting != "default":
            argv += ["-w", "1", "--no-periodic", "--quiet"]
        return argv

    def purge(self) -> None:
        self.app.huey.flush()

    def cleanup(self) -> None:
        self.app.huey.flush()
        self.redis_cleanup()


def make(setting: str, url: str) -> HueySubject:
    return HueySubject(setting, url)
