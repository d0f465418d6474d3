"""How a claim's cost and the store's size grow with the number of waiting jobs (queuebox).

The queue is filled step by step to each depth (1k, 10k, 100k, 1M in the full run): SQL
stores by inserting the rows directly, Redis through the adapter in batches of 10,000. At
each depth the workload times ``claim(limit=1)`` (then ``complete``) a few hundred times and
reports the median, and reads the store's size per waiting job.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks.jobs import QUEUE
from benchmarks.queuebox_subjects import QueueboxSubject
from queuebox.backends.base import NewJob
from queuebox.payload import encode_handler

__all__ = ["measure_claim_cost"]


def _fill_with_adapter(subject: QueueboxSubject, first: int, count: int) -> None:
    for start in range(first, first + count, 10_000):
        stop = min(first + count, start + 10_000)
        subject.adapter.schedule(
            [
                NewJob(
                    name="BenchNoop",
                    handler=encode_handler("BenchNoop", (i,), {}),
                    queue=QUEUE,
                    priority=50,
                )
                for i in range(start, stop)
            ]
        )


def _claim_times(subject: QueueboxSubject, rounds: int) -> list[float]:
    adapter = subject.adapter
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        jobs = adapter.claim("bench-claim-cost", [QUEUE], limit=1, lease=60.0)
        times.append(time.perf_counter() - started)
        for job in jobs:
            adapter.complete(job.id, job.lock_token or "")
    return times


def measure_claim_cost(
    subject: QueueboxSubject, depths: list[int], rounds: int
) -> list[dict[str, Any]]:
    subject.setup()
    subject.purge()
    empty = subject.space.footprint()
    points = []
    filled = 0
    for depth in sorted(depths):
        started = time.perf_counter()
        if not subject.space.bulk_load(filled, depth - filled):
            _fill_with_adapter(subject, filled, depth - filled)
        fill_seconds = time.perf_counter() - started
        filled = depth
        size = subject.space.footprint()
        _claim_times(subject, 20)  # warm caches and plans
        times = _claim_times(subject, rounds)
        filled -= 20 + rounds
        point: dict[str, Any] = {
            "depth": depth,
            "claim_us_median": statistics.median(times) * 1e6,
            "claim_us_p90": sorted(times)[int(0.9 * (len(times) - 1))] * 1e6,
            "fill_seconds": fill_seconds,
        }
        if subject.store == "redis":
            point["bytes_per_job"] = (size["memory_usage"] - empty["memory_usage"]) / depth
            point["used_memory_per_job"] = (size["used_memory"] - empty["used_memory"]) / depth
        else:
            point["bytes_per_job"] = (size["total"] - empty["total"]) / depth
            point["table_bytes_per_job"] = (size["table"] - empty["table"]) / depth
            point["index_bytes_per_job"] = (size["indexes"] - empty["indexes"]) / depth
        points.append(point)
    subject.purge()
    return points
