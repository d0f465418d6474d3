"""The workloads every subject runs: enqueue, drain, pickup latency."""

from __future__ import annotations

import re
import time
from typing import Any

from benchmarks.harness import Marks, WorkerGroup, percentile, watch_drain
from benchmarks.subject import NotOffered, Subject

__all__ = ["measure_bulk", "measure_drain", "measure_enqueue", "measure_latency"]

_LOCKED = re.compile(r"database is locked", re.IGNORECASE)


def _counters(subject: Subject, redis_url: str | None) -> Any:
    if subject.store != "redis" or not redis_url:
        return None
    from benchmarks.redis_stats import RedisCounters  # noqa: PLC0415

    return RedisCounters(redis_url)


def measure_enqueue(
    subject: Subject, count: int, max_seconds: float, redis_url: str | None = None
) -> dict[str, Any]:
    """Jobs per second enqueued one call at a time."""
    counters = _counters(subject, redis_url)
    subject.enqueue_each(0, 10)  # connect, load scripts, warm up
    subject.purge()
    done, chunk = 0, 200
    if counters:
        counters.start()
    started = time.perf_counter()
    while done < count:
        subject.enqueue_each(done, min(chunk, count - done))
        done += min(chunk, count - done)
        if time.perf_counter() - started > max_seconds:
            break
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {"jobs": done, "seconds": elapsed, "rate": done / elapsed}
    if counters:
        result.update(counters.per_job(done))
        counters.close()
    subject.purge()
    return result


def measure_bulk(subject: Subject, count: int, redis_url: str | None = None) -> dict[str, Any]:
    """Jobs per second through the bulk API, ``count`` jobs in one call."""
    counters = _counters(subject, redis_url)
    try:
        subject.enqueue_bulk(0, 10)
    except NotOffered:
        return {"rate": None, "note": "no bulk enqueue API"}
    subject.purge()
    if counters:
        counters.start()
    started = time.perf_counter()
    subject.enqueue_bulk(0, count)
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {"jobs": count, "seconds": elapsed, "rate": count / elapsed}
    if counters:
        result.update(counters.per_job(count))
        counters.close()
    subject.purge()
    return result


class _CpuShares:
    """How many cores the workers and the Redis server kept busy while the drain was timed
    (from the rate's start to the last job): CPU seconds over wall seconds."""

    def __init__(self, group: WorkerGroup, counters: Any) -> None:
        self._group, self._counters = group, counters
        self._marks: list[tuple[float, float | None, float | None]] = []

    def _now(self) -> tuple[float, float | None, float | None]:
        server = self._counters.cpu_seconds() if self._counters else None
        return time.monotonic(), self._group.cpu_seconds(), server

    def start(self) -> None:
        self._marks = [self._now()]

    def stop(self) -> None:
        if self._marks:
            self._marks.append(self._now())

    def shares(self) -> dict[str, float | None]:
        """Cores busy, and the window's length (below ~0.5 s, /proc's 10 ms ticks make the
        shares noise)."""
        if len(self._marks) < 2 or self._marks[1][0] <= self._marks[0][0]:
            return {}
        (t0, w0, s0), (t1, w1, s1) = self._marks
        return {
            "cpu_window_seconds": t1 - t0,
            "worker_cpu_share": None if w0 is None or w1 is None else (w1 - w0) / (t1 - t0),
            "server_cpu_share": None if s0 is None or s1 is None else (s1 - s0) / (t1 - t0),
        }


def measure_drain(
    subject: Subject, count: int, procs: int, max_seconds: float, redis_url: str | None = None
) -> dict[str, Any]:
    """Drain ``count`` queued no-op jobs with ``procs`` worker processes."""
    subject.purge()
    subject.fill(count)
    counters = _counters(subject, redis_url)
    marks = Marks()
    group = WorkerGroup(
        subject.worker_argv(), marks, procs, env=subject.worker_env(), cwd=subject.worker_cwd()
    )
    try:
        if counters:
            counters.start()
        group.start()
        cpu = _CpuShares(group, counters)
        timing = watch_drain(group, count, max_seconds, on_rate_start=cpu.start)
        cpu.stop()
        result: dict[str, Any] = {
            "procs": procs,
            "jobs": count,
            "done": timing.done,
            "rate": timing.rate,
            "startup_seconds": timing.startup,
            "capped": timing.capped,
            "crashed": timing.crashed,
            **cpu.shares(),
        }
        if counters and timing.done:
            result.update(counters.per_job(timing.done))
        group.stop()
        logs = group.logs()
        result["database_locked_errors"] = len(_LOCKED.findall(logs))
        if timing.crashed or not timing.done:
            result["log_tail"] = logs[-2000:]
    finally:
        group.stop()
        marks.remove()
        if counters:
            counters.close()
    subject.purge()
    return result


def measure_latency(subject: Subject, probes: int, interval: float = 0.01) -> dict[str, Any]:
    """Probes enqueued one by one, ``interval`` apart, into an idle worker: from just before
    the enqueue call to the probe's first line."""
    subject.purge()
    marks = Marks()
    group = WorkerGroup(
        subject.worker_argv(), marks, 1, env=subject.worker_env(), cwd=subject.worker_cwd()
    )
    sent: dict[int, int] = {}
    try:
        group.start()
        subject.enqueue_ping(0)
        if not _wait_stamps(marks, 1, 90.0):
            return {
                "p50_ms": None,
                "p99_ms": None,
                "note": "the worker never ran the warm-up",
                "log_tail": group.logs()[-2000:],
            }
        time.sleep(0.5)  # let the worker go idle
        origin = time.monotonic()
        for seq in range(1, probes + 1):
            pause = origin + (seq - 1) * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent[seq] = time.monotonic_ns()
            subject.enqueue_ping(seq)
        _wait_stamps(marks, probes + 1, 30.0)
        seen = marks.stamps()
    finally:
        group.stop()
        marks.remove()
    subject.purge()
    latencies = [(seen[seq] - sent[seq]) / 1e6 for seq in sent if seq in seen]
    if not latencies:
        return {"p50_ms": None, "p99_ms": None, "probes": probes, "lost": probes}
    return {
        "probes": probes,
        "lost": probes - len(latencies),
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies),
    }


def _wait_stamps(marks: Marks, expected: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(marks.stamps()) >= expected:
            return True
        time.sleep(0.005)
    return False
