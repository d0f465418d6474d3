"""Prometheus metrics, read from the store at each scrape (``prometheus-client``).

Every machine sees the same numbers, because they come from the store, not from one
process's memory. The names (``docs/dashboard.md`` lists them):

* ``queuebox_jobs{queue,state}``: jobs per queue and state, now;
* ``queuebox_oldest_ready_job_age_seconds{queue}``: how long the oldest ready job has been
  due (0 when none is ready);
* ``queuebox_job_outcomes_total{queue,name,outcome}`` and the histogram
  ``queuebox_job_runtime_seconds{queue,name}`` (buckets = ``RUNTIME_BUCKETS``): totals over
  the minutes the store keeps (``ThroughputHistory.retention``, 24 hours), so they drop as
  old minutes leave the window; use ``increase()`` over windows shorter than that;
* ``queuebox_workers{state}``: registered workers, alive and lost;
* ``queuebox_queue_paused{queue}``: 1 for a paused queue, 0 for the others;
* ``queuebox_store_up``: 0 when the store could not be read (the rest is then missing).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from queuebox.backends.base import (
    RUNTIME_BUCKETS,
    Adapter,
    FlowControl,
    JobState,
    MinuteStats,
    QueueCounts,
    ThroughputHistory,
    WorkerRegistry,
)
from queuebox.errors import QueueboxError, redact_text
from queuebox.web.serialize import STATES

__all__ = ["OLDEST_READY_SCAN", "StoreCollector", "render_metrics"]

log = logging.getLogger("queuebox.web")

#: Ready jobs read per queue to find the oldest: stores list them best first (priority, then
#: run_at), so the oldest is exact while a queue holds at most this many ready jobs, and is
#: the oldest of the next ones to run beyond that.
OLDEST_READY_SCAN = 1000

OUTCOMES = ("succeeded", "retried", "failed", "cancelled")


class StoreCollector(Collector):
    """A collector that reads the store at each ``collect``."""

    def __init__(self, store: Adapter) -> None:
        self.store = store

    def collect(self) -> Iterable[Metric]:
        try:
            metrics = list(self._read())
        except QueueboxError as exc:
            log.warning("metrics: the store could not be read: %s", redact_text(str(exc)))
            metrics = []
            up = 0
        else:
            up = 1
        yield from metrics
        yield GaugeMetricFamily(
            "queuebox_store_up", "1 when the store answered this scrape, else 0", value=up
        )

    def _read(self) -> Iterator[Metric]:
        store = self.store
        counts = store.counts()
        yield self._jobs(counts)
        yield self._oldest_ready(counts)
        if isinstance(store, FlowControl):
            paused = store.paused_queues()
            family = GaugeMetricFamily(
                "queuebox_queue_paused", "1 when the queue is paused", labels=["queue"]
            )
            for queue in sorted({c.queue for c in counts} | paused):
                family.add_metric([queue], 1 if queue in paused else 0)
            yield family
        if isinstance(store, WorkerRegistry):
            workers = store.workers()
            family = GaugeMetricFamily(
                "queuebox_workers", "Registered worker processes by state", labels=["state"]
            )
            family.add_metric(["alive"], sum(not w.lost for w in workers))
            family.add_metric(["lost"], sum(w.lost for w in workers))
            yield family
        if isinstance(store, ThroughputHistory):
            since = store.now() - timedelta(seconds=store.retention)
            yield from self._history(store.stats(since=since))

    def _jobs(self, counts: list[QueueCounts]) -> Metric:
        family = GaugeMetricFamily(
            "queuebox_jobs", "Jobs stored, per queue and state", labels=["queue", "state"]
        )
        for queue in counts:
            for state in STATES:
                family.add_metric([queue.queue, state.value], getattr(queue, state.value))
        return family

    def _oldest_ready(self, counts: list[QueueCounts]) -> Metric:
        family = GaugeMetricFamily(
            "queuebox_oldest_ready_job_age_seconds",
            "Seconds the oldest ready job of the queue has been due (0 when none is ready)",
            labels=["queue"],
        )
        now = self.store.now()
        for queue in counts:
            age = 0.0
            if queue.ready:
                ready = self.store.list_jobs(
                    queues=[queue.queue], states=[JobState.READY], limit=OLDEST_READY_SCAN
                )
                if ready:
                    oldest = min(job.run_at for job in ready)
                    age = max(0.0, (now - oldest).total_seconds())
            family.add_metric([queue.queue], age)
        return family

    def _history(self, stats: list[MinuteStats]) -> Iterator[Metric]:
        totals: dict[tuple[str, str], MinuteStats] = {}
        for tally in stats:
            key = (tally.queue, tally.name)
            seen = totals.get(key)
            totals[key] = tally if seen is None else seen.merged(tally)
        outcomes = CounterMetricFamily(
            "queuebox_job_outcomes",
            "Runs that ended, by outcome, over the minutes the store keeps",
            labels=["queue", "name", "outcome"],
        )
        runtimes = HistogramMetricFamily(
            "queuebox_job_runtime_seconds",
            "Run time of the runs that ended, over the minutes the store keeps",
            labels=["queue", "name"],
        )
        for (queue, name), total in sorted(totals.items()):
            for outcome in OUTCOMES:
                outcomes.add_metric([queue, name, outcome], getattr(total, outcome))
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, count in zip(
                (*(repr(float(b)) for b in RUNTIME_BUCKETS), "+Inf"),
                total.runtime_counts,
                strict=True,
            ):
                cumulative += count
                buckets.append((bound, cumulative))
            runtimes.add_metric([queue, name], buckets, total.runtime_sum)
        yield outcomes
        yield runtimes


def render_metrics(store: Adapter) -> bytes:
    """The Prometheus text exposition of ``store``'s metrics (blocking: reads the store)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return generate_latest(registry)
