"""queuebox itself as a benchmark subject, on each store, at two settings.

* ``default``: ``queuebox work`` exactly as the README runs it (batch size 1, INFO log lines
  for every job, to a file).
* ``fastest``: ``python -m benchmarks.queuebox_worker`` (the same ``Worker``, batch size 100,
  log level WARNING).
"""

from __future__ import annotations

import queuebox
from benchmarks.jobs import QUEUE, BenchNoop, BenchPing
from benchmarks.stores import StoreSpace
from benchmarks.subject import Subject, python, python_env
from queuebox.backends import from_url
from queuebox.backends.base import Adapter

__all__ = ["SETTINGS", "QueueboxSubject"]

#: setting -> (batch size, how the worker is started)
SETTINGS = {
    "default": (1, "queuebox work (CLI, batch 1, INFO logs)"),
    "fastest": (100, "Worker, batch 100, WARNING logs"),
}


class QueueboxSubject(Subject):
    def __init__(self, store: str, server_url: str, setting: str = "fastest") -> None:
        self.store = store
        self.system = f"queuebox-{store}"
        self.setting = setting
        self.batch_size, self.detail = SETTINGS[setting]
        self.space = StoreSpace(store, server_url)
        self.url = self.space.url
        self._adapter: Adapter | None = None

    @property
    def adapter(self) -> Adapter:
        if self._adapter is None:
            self._adapter = from_url(self.url)
            queuebox.configure(adapter=self._adapter)
        return self._adapter

    def setup(self) -> None:
        self.adapter.migrate()

    def enqueue_each(self, start: int, count: int) -> None:
        self.adapter  # noqa: B018 - configure before the timed loop
        perform_later = BenchNoop.perform_later
        for i in range(start, start + count):
            perform_later(i)

    def enqueue_bulk(self, start: int, count: int) -> None:
        self.adapter  # noqa: B018
        BenchNoop.perform_later_many([[i] for i in range(start, start + count)])

    def enqueue_ping(self, seq: int) -> None:
        BenchPing.perform_later(seq)

    def fill(self, count: int) -> None:
        self.adapter  # noqa: B018
        if not self.space.bulk_load(0, count):
            super().fill(count)

    def worker_argv(self) -> list[str]:
        if self.setting == "default":
            return [
                python(),
                "-m",
                "queuebox",
                "--url",
                self.url,
                "--app",
                "benchmarks.jobs",
                "work",
                "-q",
                QUEUE,
            ]
        return [
            python(),
            "-m",
            "benchmarks.queuebox_worker",
            self.url,
            "--batch-size",
            str(self.batch_size),
            "--queue",
            QUEUE,
        ]

    def worker_env(self) -> dict[str, str]:
        return python_env()

    def purge(self) -> None:
        self.adapter.clear()

    def close(self) -> None:
        if self._adapter is not None:
            self._adapter.close()
            self._adapter = None

    def cleanup(self) -> None:
        self.close()
        self.space.remove()
