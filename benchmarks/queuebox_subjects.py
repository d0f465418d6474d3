"""queuebox itself as a benchmark subject, on each store, at three settings.

* ``default``: ``queuebox work`` exactly as the README runs it (batch size 1, INFO log lines
  for every job, to a file).
* ``fastest``: ``queuebox --log-level WARNING work --batch-size 100``: the same command with
  the two settings that matter for short jobs.
* ``io`` (the I/O workload): ``queuebox --log-level WARNING work -c N``, jobs that wait 20 ms,
  sync (``time.sleep`` on the worker's threads) or async (``asyncio.sleep`` on its loop).

``record_stats=False`` starts the worker from a folder whose ``queuebox.toml`` turns the
per-minute throughput tallies off (``[[workers]] record_stats = false``), to measure what
they cost.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import queuebox
from benchmarks.jobs import QUEUE, BenchAwait, BenchNoop, BenchPing, BenchWait
from benchmarks.stores import StoreSpace
from benchmarks.subject import Subject, python, python_env
from queuebox.backends import from_url
from queuebox.backends.base import Adapter, ThroughputHistory

__all__ = ["IO_KINDS", "SETTINGS", "QueueboxSubject"]

#: setting -> (batch size, log level, how the worker is started)
SETTINGS = {
    "default": (1, "INFO", "queuebox work (CLI, batch 1, INFO logs)"),
    "fastest": (100, "WARNING", "queuebox --log-level WARNING work --batch-size 100"),
    "io": (1, "WARNING", "queuebox --log-level WARNING work -c {concurrency} ({kind} jobs)"),
}
#: The I/O workload's job classes: sync jobs wait in a thread, async ones on the loop.
IO_KINDS = {"sync": BenchWait, "async": BenchAwait}
_NO_STATS = '[[workers]]\nqueue = "bench"\nrecord_stats = false\n'


class QueueboxSubject(Subject):
    def __init__(
        self,
        store: str,
        server_url: str,
        setting: str = "fastest",
        *,
        concurrency: int = 1,
        io_kind: str = "sync",
        record_stats: bool = True,
    ) -> None:
        if setting not in SETTINGS:
            raise ValueError(f"unknown setting {setting!r}; known: {', '.join(SETTINGS)}")
        if io_kind not in IO_KINDS:
            raise ValueError(f"unknown I/O job kind {io_kind!r}; known: sync, async")
        self.store = store
        self.system = f"queuebox-{store}"
        self.setting = setting
        self.concurrency = concurrency
        self.io_kind = io_kind
        self.record_stats = record_stats
        self.batch_size, self.log_level, detail = SETTINGS[setting]
        self.detail = detail.format(concurrency=concurrency, kind=io_kind)
        if not record_stats:
            self.detail += ", record_stats = false"
        self.space = StoreSpace(store, server_url)
        self.url = self.space.url
        self._adapter: Adapter | None = None
        self._cwd: Path | None = None
        self._started = datetime.now(UTC).replace(second=0, microsecond=0)

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

    def fill_io(self, count: int) -> None:
        self.adapter  # noqa: B018
        job = IO_KINDS[self.io_kind]
        for start in range(0, count, 10_000):
            job.perform_later_many([[i] for i in range(start, min(count, start + 10_000))])

    def worker_argv(self) -> list[str]:
        argv = [python(), "-m", "queuebox", "--url", self.url, "--app", "benchmarks.jobs"]
        if self.setting == "default":
            return [*argv, "work", "-q", QUEUE]
        argv += ["--log-level", self.log_level, "work", "-q", QUEUE]
        if self.setting == "io":
            return [*argv, "-c", str(self.concurrency)]
        return [*argv, "--batch-size", str(self.batch_size)]

    def worker_env(self) -> dict[str, str]:
        return python_env()

    def worker_cwd(self) -> str | None:
        if self.record_stats:
            return None
        if self._cwd is None:
            self._cwd = Path(tempfile.mkdtemp(prefix="queuebox-bench-nostats-"))
            (self._cwd / "queuebox.toml").write_text(_NO_STATS)
        return str(self._cwd)

    def keeps_history(self) -> bool:
        """Whether this store keeps the workers' throughput tallies at all."""
        return isinstance(self.adapter, ThroughputHistory)

    def tallied(self) -> int | None:
        """Runs the workers handed to the store's throughput history since this subject was
        made (``None``: the store keeps no history)."""
        adapter = self.adapter
        if not isinstance(adapter, ThroughputHistory):
            return None
        return sum(minute.finished for minute in adapter.stats(since=self._started))

    def purge(self) -> None:
        self.adapter.clear()

    def close(self) -> None:
        if self._adapter is not None:
            self._adapter.close()
            self._adapter = None

    def cleanup(self) -> None:
        self.close()
        self.space.remove()
        if self._cwd is not None:
            shutil.rmtree(self._cwd, ignore_errors=True)
