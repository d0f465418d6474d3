"""procrastinate: ``procrastinate worker`` with its defaults (concurrency 1, LISTEN/NOTIFY,
finished jobs kept); the fastest setting runs 10 jobs at once and deletes finished jobs; the
I/O setting runs 50 at once, deletes finished jobs and logs warnings only."""

from __future__ import annotations

import importlib
from types import ModuleType

import psycopg

from benchmarks.peers import PeerSubject, script


class ProcrastinateSubject(PeerSubject):
    system = "procrastinate"
    io_kind = "async"
    store = "postgres"

    def __init__(self, setting: str, url: str) -> None:
        super().__init__(setting, url)
        self.detail = {
            "default": "procrastinate worker (concurrency 1)",
            "io": "procrastinate --log-level warning worker --concurrency 50 --delete-jobs always",
        }.get(setting, "procrastinate worker --concurrency 10 --delete-jobs always")
        self.concurrency = 50 if setting == "io" else 1
        self.app: ModuleType = importlib.import_module("benchmarks.peers.procrastinate_app")
        self.schema = self.app.SCHEMA

    def setup(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {self.schema}")
        self.app.app.open()
        self.app.app.schema_manager.apply_schema()

    def enqueue_each(self, start: int, count: int) -> None:
        defer = self.app.noop.defer
        for i in range(start, start + count):
            defer(i=i)

    def enqueue_bulk(self, start: int, count: int) -> None:
        self.app.noop.batch_defer(*({"i": i} for i in range(start, start + count)))

    def enqueue_ping(self, seq: int) -> None:
        self.app.ping.defer(seq=seq)

    def fill_io(self, count: int) -> None:
        for start in range(0, count, 10_000):
            jobs = ({"i": i} for i in range(start, min(count, start + 10_000)))
            self.app.wait.batch_defer(*jobs)

    def worker_argv(self) -> list[str]:
        app = ["--app", "benchmarks.peers.procrastinate_app.app"]
        worker = ["worker", "--queues", self.queue]
        if self.setting == "io":
            options = ["--concurrency", "50", "--delete-jobs", "always"]
            return [script("procrastinate"), *app, "--log-level", "warning", *worker, *options]
        argv = [script("procrastinate"), *app, *worker]
        if self.setting != "default":
            argv += ["--concurrency", "10", "--delete-jobs", "always"]
        return argv

    def purge(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {self.schema}.procrastinate_jobs CASCADE")

    def cleanup(self) -> None:
        self.app.app.close()
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


def make(setting: str, url: str) -> ProcrastinateSubject:
    return ProcrastinateSubject(setting, url)
