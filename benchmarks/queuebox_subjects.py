"""queuebox itself as a benchmark subject, on each store, at two settings.

* ``default``: ``queuebox work`` exactly as the README runs it (batch size 1, INFO log lines
  for every job, to a file).
* ``fastest``: ``queuebox --log-level WARNING work --batch-size 100``: the same command with
  the two settings that matter for short jobs.
"""

from __future__ import annotations

import queuebox
from benchmarks.jobs import QUEUE, BenchNoop, BenchPing
from benchmarks.stores import StoreSpace
from benchmarks.subject import Subject, python, python_env
from queuebox.backends import from_url
from queuebox.backends.base import Adapter

__all__ = ["SETTINGS", "QueueboxSubject"]

#: setting -> (batch size, log level, how the worker is started)
SETTINGS = {
    "default": (1, "INFO", "queuebox work (CLI, batch 1, INFO logs)"),
    "fastest": (100, "WARNING", "queuebox --log-level WARNING work --batch-size 100"),
}


class QueueboxSubject(Subject):
    def __init__(self, store: str, server_url: str, setting: str = "fastest") -> None:
        self.store = store
        self.system = f"queuebox-{store}"
        self.setting = setting
        self.batch_size, self.log_level, self.detail = SETTINGS[setting]
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
        argv = [python(), "-m", "queuebox", "--url", self.url, "--app", "benchmarks.jobs"]
        if self.setting == "default":
            return [*argv, "work", "-q", QUEUE]
        argv += ["--log-level", self.log_level, "work", "-q", QUEUE]
        return [*argv, "--batch-size", str(self.batch_size)]

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
