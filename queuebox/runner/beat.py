"""A worker's record in the store's registry (``WorkerRegistry``), with its throughput
tallies (``ThroughputHistory``): built and sent from the heartbeat's thread."""

from __future__ import annotations

import dataclasses
import os
import socket
from datetime import UTC, datetime

from queuebox.backends.base import (
    Adapter,
    RunningJob,
    ThroughputHistory,
    WorkerInfo,
    WorkerRegistry,
)
from queuebox.runner.heartbeat import BEAT_INTERVAL
from queuebox.runner.runs import HeldJobs
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.stats import StatsCollector

__all__ = ["RegistryBeat"]

#: A worker counts as lost after this many beats in a row did not come.
_MISSED_BEATS = 3


class RegistryBeat:
    def __init__(
        self,
        store: WorkerRegistry,
        adapter: Adapter,
        settings: WorkerSettings,
        *,
        worker_id: str,
        held: HeldJobs,
        stats: StatsCollector | None,
    ) -> None:
        from queuebox import __version__  # noqa: PLC0415 - the package imports the runner

        self.store = store
        self.held = held
        self.stats = stats if isinstance(adapter, ThroughputHistory) else None
        self.base = WorkerInfo(
            id=worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=settings.queues,
            concurrency=settings.concurrency,
            version=__version__,
            started_at=datetime.now(UTC),
        )

    def __call__(self) -> None:
        """Record this worker as it is now (the jobs it runs) and hand over its tallies."""
        jobs = tuple(
            RunningJob(
                held.record.id,
                held.record.name,
                held.record.queue,
                held.record.locked_at or self.base.started_at,
            )
            for held in sorted(self.held.running(), key=lambda held: held.slot)
        )
        info = dataclasses.replace(self.base, jobs=jobs)
        stats = self.stats.take_all() if self.stats is not None else []
        try:
            self.store.beat(info, ttl=BEAT_INTERVAL * _MISSED_BEATS, stats=stats)
        except BaseException:
            if self.stats is not None:
                self.stats.put_back(stats)
            raise

    def retire(self) -> None:
        """A clean exit: the last tallies, then the record goes."""
        self()
        self.store.retire(self.base.id)
