"""``/metrics``: Prometheus text that ``prometheus_client.parser`` reads, with the numbers
the store holds, on the memory store (every interface) and SQLite (what it declares)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from helpers import CoreOnly
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from queuebox.backends import from_url
from queuebox.backends.base import (
    RUNTIME_BUCKETS,
    Adapter,
    MinuteStats,
    NewJob,
    WorkerInfo,
)
from queuebox.backends.memory import MemoryAdapter
from queuebox.errors import StorageUnavailable
from queuebox.web import create_app, create_metrics_app


def add(store: Adapter, queue: str, n: int = 1, delay: float = 0) -> None:
    handler = json.dumps({"name": "Mail", "args": [], "kwargs": {}})
    store.schedule(
        [NewJob(name="Mail", handler=handler, queue=queue, priority=50, delay=delay)] * n
    )


def scrape(app: Any) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted labels: value}}`` of one scrape, parsed by prometheus_client."""
    response = TestClient(app).get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_jobs_per_queue_and_state_and_the_oldest_ready_age(tmp_path: Path) -> None:
    store = from_url(f"sqlite:///{tmp_path / 'm.db'}")
    store.migrate()
    add(store, "email", 3)
    add(store, "email", 2, delay=3600)
    add(store, "reports", 1, delay=3600)
    samples = scrape(create_app(store))
    jobs = samples["queuebox_jobs"]
    assert jobs[(("queue", "email"), ("state", "ready"))] == 3
    assert jobs[(("queue", "email"), ("state", "scheduled"))] == 2
    assert jobs[(("queue", "reports"), ("state", "cancelled"))] == 0
    ages = samples["queuebox_oldest_ready_job_age_seconds"]
    assert 0 <= ages[(("queue", "email"),)] < 60
    assert ages[(("queue", "reports"),)] == 0  # nothing ready
    assert samples["queuebox_store_up"][()] == 1
    store.close()


def test_outcomes_runtimes_workers_and_paused_queues_from_the_store() -> None:
    store = MemoryAdapter()
    add(store, "email")
    now = store.now()
    minute = now.replace(second=0, microsecond=0)
    runtimes = [0] * (len(RUNTIME_BUCKETS) + 1)
    runtimes[0], runtimes[5], runtimes[-1] = 4, 2, 1
    store.add_stats(
        [
            MinuteStats(
                "email",
                "Mail",
                minute,
                succeeded=5,
                failed=1,
                retried=1,
                runtime_counts=tuple(runtimes),
                runtime_sum=2000.5,
            ),
            MinuteStats("email", "Mail", minute - timedelta(minutes=3), cancelled=2),
        ]
    )
    store.beat(WorkerInfo("w1", "alpha", 1, None, 1, "0.1.0", now), ttl=30)
    store.beat(WorkerInfo("w2", "beta", 2, None, 1, "0.1.0", now), ttl=30)
    store.pause("reports")
    samples = scrape(create_metrics_app(store))
    outcomes = samples["queuebox_job_outcomes_total"]
    key = (("name", "Mail"), ("outcome", "succeeded"), ("queue", "email"))
    assert outcomes[key] == 5
    assert outcomes[(("name", "Mail"), ("outcome", "cancelled"), ("queue", "email"))] == 2
    buckets = samples["queuebox_job_runtime_seconds_bucket"]
    bounds = sorted(float(dict(labels)["le"]) for labels in buckets if dict(labels)["le"] != "+Inf")
    assert bounds == [float(b) for b in RUNTIME_BUCKETS]
    mail = (("name", "Mail"), ("queue", "email"))
    assert buckets[(("le", "0.001"), *mail)] == 4
    assert buckets[(("le", "0.1"), *mail)] == 6  # cumulative: 4 + 2
    assert buckets[(("le", "+Inf"), *mail)] == 7
    assert samples["queuebox_job_runtime_seconds_count"][mail] == 7
    assert samples["queuebox_job_runtime_seconds_sum"][mail] == 2000.5
    assert samples["queuebox_workers"] == {(("state", "alive"),): 2, (("state", "lost"),): 0}
    assert samples["queuebox_queue_paused"] == {
        (("queue", "email"),): 0,
        (("queue", "reports"),): 1,
    }


def test_a_core_only_store_gets_the_core_metrics_alone() -> None:
    inner = MemoryAdapter()
    add(inner, "email")
    samples = scrape(create_app(CoreOnly(inner)))
    assert "queuebox_jobs" in samples and "queuebox_store_up" in samples
    for absent in ("queuebox_workers", "queuebox_queue_paused", "queuebox_job_outcomes_total"):
        assert absent not in samples


class Unreachable(CoreOnly):
    def counts(self) -> Any:
        raise StorageUnavailable("cannot connect to redis://:topsecret@db:6379/0", url=None)


def test_an_unreachable_store_is_reported_as_down_not_as_an_error() -> None:
    samples = scrape(create_app(Unreachable(MemoryAdapter())))
    assert samples == {"queuebox_store_up": {(): 0.0}}
    # The dashboard's JSON says so too, with the URL's password hidden.
    response = TestClient(create_app(Unreachable(MemoryAdapter()))).get("/api/overview")
    assert response.status_code == 503
    assert "topsecret" not in response.text and "***" in response.text
