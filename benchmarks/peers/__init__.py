"""Peer libraries run through the same workloads, each at its default and fastest setting.

Each peer has a ``*_app`` module (its job definitions, imported by its workers; it reads
its broker URL, queue name and setting from the environment) and a ``*_bench`` module (the
``Subject`` the driver uses). Only the peer's own interpreter imports them.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from benchmarks.subject import REPO, Subject, python_env

__all__ = ["PEERS", "PEERS_VENV", "Peer", "PeerSubject"]

PEERS_VENV = REPO / "benchmarks" / ".venv-peers"


@dataclass(frozen=True)
class Peer:
    name: str
    module: str  # the *_bench module
    store: str
    requirement: str  # the pip requirement that installs it


PEERS = {
    peer.name: peer
    for peer in (
        Peer("rq", "benchmarks.peers.rq_bench", "redis", "rq"),
        Peer("dramatiq", "benchmarks.peers.dramatiq_bench", "redis", "dramatiq[redis]"),
        Peer("huey", "benchmarks.peers.huey_bench", "redis", "huey"),
        Peer("celery", "benchmarks.peers.celery_bench", "redis", "celery[redis]"),
        Peer("arq", "benchmarks.peers.arq_bench", "redis", "arq"),
        Peer("saq", "benchmarks.peers.saq_bench", "redis", "saq"),
        Peer("procrastinate", "benchmarks.peers.procrastinate_bench", "postgres", "procrastinate"),
    )
}

#: Environment variables the *_app modules read.
URL_ENV = "QUEUEBOX_BENCH_BROKER"
QUEUE_ENV = "QUEUEBOX_BENCH_QUEUE"
SETTING_ENV = "QUEUEBOX_BENCH_SETTING"


class PeerSubject(Subject):
    """A peer on a Redis or PostgreSQL server, under a queue name with a random token."""

    def __init__(self, setting: str, url: str) -> None:
        self.setting = setting
        self.url = url
        self.token = secrets.token_hex(4)
        self.queue = f"qbbench-{self.token}"
        self._next_id = 0
        os.environ.update(self.app_env())

    def app_env(self) -> dict[str, str]:
        return {URL_ENV: self.url, QUEUE_ENV: self.queue, SETTING_ENV: self.setting}

    def worker_env(self) -> dict[str, str]:
        return {**python_env(), **self.app_env()}

    def next_ids(self, count: int) -> list[str]:
        first = self._next_id
        self._next_id += count
        return [f"{self.queue}-{n}" for n in range(first, first + count)]

    def redis_cleanup(self) -> None:
        """Delete every key that carries this subject's token."""
        import redis  # noqa: PLC0415

        client = redis.Redis.from_url(self.url)
        try:
            keys = list(client.scan_iter(match=f"*{self.token}*", count=1000))
            for start in range(0, len(keys), 500):
                client.unlink(*keys[start : start + 500])
        finally:
            client.close()


def script(name: str) -> str:
    """A console script installed beside the running interpreter (``rq``, ``celery``...)."""
    import sys  # noqa: PLC0415

    return str(Path(sys.executable).parent / name)
