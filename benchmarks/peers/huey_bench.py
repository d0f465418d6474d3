"""Huey: ``huey_consumer`` with its defaults (one thread worker, periodic tasks on, INFO
logs per task); the fastest setting turns periodic tasks and per-task logs off."""

from __future__ import annotations

import importlib
from types import ModuleType

from benchmarks.peers import PeerSubject, script


class HueySubject(PeerSubject):
    system = "huey"
    store = "redis"

    def __init__(self, setting: str, url: str) -> None:
        super().__init__(setting, url)
        self.detail = (
            "huey_consumer (1 thread)"
            if setting == "default"
            else "huey_consumer -w 1 --no-periodic --quiet"
        )
        self.app: ModuleType = importlib.import_module("benchmarks.peers.huey_app")

    def enqueue_each(self, start: int, count: int) -> None:
        task = self.app.noop
        for i in range(start, start + count):
            task(i)

    def enqueue_ping(self, seq: int) -> None:
        self.app.ping(seq)

    def worker_argv(self) -> list[str]:
        argv = [script("huey_consumer"), "benchmarks.peers.huey_app.huey"]
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
