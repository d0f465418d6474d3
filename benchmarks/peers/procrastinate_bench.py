"""procrastinate: ``procrastinate worker`` with its defaults (concurrency 1, LISTEN/NOTIFY,
finished jobs kept); the fastest setting runs 10 jobs at once and deletes finished jobs."""

from __future__ import annotations

import importlib
from types import ModuleType

import psycopg

from benchmarks.peers import PeerSubject, script


class ProcrastinateSubject(PeerSubject):
    system = "procrastinate"
    store = "postgres"

    def __init__(self, setting: str, url: str) -> None:
        super().__init__(setting, url)
        self.detail = (
            "procrastinate worker (concurrency 1)"
            if setting == "default"
            else "procrastinate worker --concurrency 10 --delete-jobs always"
        )
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

    def worker_argv(self) -> list[str]:
        argv = [
            script("procrastinate"),
            "--app",
            "benchmarks.peers.procrastinate_app.app",
            "worker",
            "--queues",
            self.queue,
        ]
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
