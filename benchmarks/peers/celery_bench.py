"""Celery: ``celery worker`` with its prefork pool (one child); the fastest setting uses
the solo pool, a prefetch multiplier of 128 and no gossip, mingle, heartbeat or remote
control; the I/O setting runs a pool of 32 threads (``-P threads -c 32``), with the same
prefetch and without them either."""

from __future__ import annotations

import importlib
from types import ModuleType

from benchmarks.peers import PeerSubject, script


class CelerySubject(PeerSubject):
    system = "celery"
    store = "redis"

    def __init__(self, setting: str, url: str) -> None:
        super().__init__(setting, url)
        self.detail = {
            "default": "celery worker -c 1 (prefork)",
            "io": "celery worker -P threads -c 32, prefetch x128, no gossip/mingle/heartbeat",
        }.get(setting, "celery worker --pool solo, prefetch x128, no gossip/mingle/heartbeat")
        self.concurrency = 32 if setting == "io" else 1
        self.app: ModuleType = importlib.import_module("benchmarks.peers.celery_app")

    def enqueue_each(self, start: int, count: int) -> None:
        delay = self.app.noop.delay
        for i in range(start, start + count):
            delay(i)

    def enqueue_ping(self, seq: int) -> None:
        self.app.ping.delay(seq)

    def fill_io(self, count: int) -> None:
        delay = self.app.wait.delay
        for i in range(count):
            delay(i)

    def worker_argv(self) -> list[str]:
        argv = [
            script("celery"),
            "-A",
            "benchmarks.peers.celery_app",
            "worker",
            "-Q",
            self.queue,
            "--loglevel",
            "WARNING",
        ]
        if self.setting == "default":
            return [*argv, "-c", "1"]
        pool = ["--pool", "threads", "-c", "32"] if self.setting == "io" else ["--pool", "solo"]
        return [
            *argv,
            *pool,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]

    def purge(self) -> None:
        self.app.app.control.purge()

    def cleanup(self) -> None:
        self.redis_cleanup()
        self.app.app.close()


def make(setting: str, url: str) -> CelerySubject:
    return CelerySubject(setting, url)
