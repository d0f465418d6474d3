"""Dramatiq: ``dramatiq`` with its default 8 worker threads; the fastest setting runs one
thread (no-op jobs gain nothing from threads) with a deeper prefetch; the I/O setting runs
32 threads in one process (``-p 1 -t 32``)."""

from __future__ import annotations

import importlib
from types import ModuleType

from benchmarks.peers import PeerSubject
from benchmarks.subject import python


class DramatiqSubject(PeerSubject):
    system = "dramatiq"
    store = "redis"

    def __init__(self, setting: str, url: str) -> None:
        super().__init__(setting, url)
        self.detail = {
            "default": "dramatiq --processes 1 (8 threads)",
            "io": "dramatiq --processes 1 --threads 32",
        }.get(setting, "dramatiq --processes 1 --threads 1, prefetch 256")
        self.concurrency = 32 if setting == "io" else 1
        self.app: ModuleType = importlib.import_module("benchmarks.peers.dramatiq_app")

    def enqueue_each(self, start: int, count: int) -> None:
        send = self.app.noop.send
        for i in range(start, start + count):
            send(i)

    def enqueue_ping(self, seq: int) -> None:
        self.app.ping.send(seq)

    def fill_io(self, count: int) -> None:
        send = self.app.wait.send
        for i in range(count):
            send(i)

    def worker_argv(self) -> list[str]:
        argv = [python(), "-m", "dramatiq", "benchmarks.peers.dramatiq_app", "--processes", "1"]
        if self.setting == "io":
            argv += ["--threads", "32"]
        elif self.setting != "default":
            argv += ["--threads", "1"]
        return argv

    def worker_env(self) -> dict[str, str]:
        env = super().worker_env()
        if self.setting == "fastest":
            env["dramatiq_queue_prefetch"] = "256"
        return env

    def purge(self) -> None:
        self.app.broker.flush_all()

    def cleanup(self) -> None:
        self.app.broker.flush_all()
        self.redis_cleanup()
        self.app.broker.close()


def make(setting: str, url: str) -> DramatiqSubject:
    return DramatiqSubject(setting, url)
