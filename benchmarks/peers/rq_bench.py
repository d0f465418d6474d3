"""RQ: ``rq worker`` forks a work horse per job by default; ``SimpleWorker`` runs jobs in
the worker process, and ``result_ttl=0`` keeps no result (the fastest setting). RQ runs one
job at a time in a worker; its I/O setting is the fastest one."""

from __future__ import annotations

from typing import Any

import redis
from rq import Queue

from benchmarks.peers import PeerSubject, script
from benchmarks.peers.rq_app import noop, ping, wait


class RQSubject(PeerSubject):
    system = "rq"
    store = "redis"

    def __init__(self, setting: str, url: str) -> None:
        super().__init__(setting, url)
        self.detail = (
            "rq worker (fork per job)"
            if setting == "default"
            else "rq worker -w SimpleWorker, result_ttl=0, quiet"
            + (" (one job at a time)" if setting == "io" else "")
        )
        self.client = redis.Redis.from_url(url)
        self.rq = Queue(self.queue, connection=self.client)
        self.options: dict[str, Any] = {} if setting == "default" else {"result_ttl": 0}

    def enqueue_each(self, start: int, count: int) -> None:
        enqueue = self.rq.enqueue_call
        for i, job_id in zip(range(start, start + count), self.next_ids(count), strict=True):
            enqueue(noop, args=(i,), job_id=job_id, **self.options)

    def enqueue_bulk(self, start: int, count: int) -> None:
        ids = self.next_ids(count)
        self.rq.enqueue_many(
            [
                Queue.prepare_data(noop, args=(i,), job_id=job_id, **self.options)
                for i, job_id in zip(range(start, start + count), ids, strict=True)
            ]
        )

    def fill_io(self, count: int) -> None:
        ids = self.next_ids(count)
        self.rq.enqueue_many(
            [
                Queue.prepare_data(wait, args=(i,), job_id=job_id, **self.options)
                for i, job_id in zip(range(count), ids, strict=True)
            ]
        )

    def enqueue_ping(self, seq: int) -> None:
        self.rq.enqueue_call(ping, args=(seq,), job_id=self.next_ids(1)[0], **self.options)

    def worker_argv(self) -> list[str]:
        argv = [script("rq"), "worker", "--url", self.url]
        if self.setting != "default":
            argv += ["-w", "rq.worker.SimpleWorker", "--quiet", "--disable-job-desc-logging"]
        return [*argv, self.queue]

    def purge(self) -> None:
        self.redis_cleanup()

    def cleanup(self) -> None:
        self.redis_cleanup()
        self.client.close()


def make(setting: str, url: str) -> RQSubject:
    return RQSubject(setting, url)
