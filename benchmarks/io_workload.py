"""The I/O workload: ``count`` jobs that each wait 20 ms, drained by ONE worker process.

A job that waits on the network costs its worker little CPU, so the question is how many
such jobs one process keeps in flight and what each costs it: the rate against the ideal
(``concurrency`` jobs per 20 ms), the CPU seconds the worker command's processes (and the
store's server) spent per 1,000 jobs while the drain was timed, and each process's peak
resident memory.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import DrainTiming, Marks, WorkerGroup, proc_stat, watch_drain
from benchmarks.marks import IO_WAIT
from benchmarks.subject import Subject

__all__ = ["measure_io_drain", "wave_rate"]

_SERVER_NAMES = {"redis": "redis-server", "postgres": "postgres"}


def wave_rate(timing: DrainTiming) -> float | None:
    """Jobs per second from the first look that saw jobs done to the last job done, over
    the jobs done after that look. Jobs that wait finish in waves of ``concurrency``; the
    first wave is counted as the start, not as work done in the window."""
    if timing.first_done is None or timing.finished is None:
        return None
    seconds = timing.finished - timing.first_done
    jobs = timing.done - timing.done_at_first
    return jobs / seconds if seconds > 0 and jobs > 0 else None


class _ServerCpu:
    """CPU seconds of the store's server processes (every ``redis-server`` or ``postgres``
    process on this machine, from ``/proc``), or ``None`` for SQLite or off Linux."""

    def __init__(self, store: str) -> None:
        self.name = _SERVER_NAMES.get(store)

    def seconds(self) -> float | None:
        if self.name is None:
            return None
        total, found = 0, False
        with contextlib.suppress(OSError):
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                with contextlib.suppress(OSError):
                    if (entry / "comm").read_text().strip() != self.name:
                        continue
                    fields = proc_stat(int(entry.name))
                    if fields is not None:
                        total += int(fields[11]) + int(fields[12])
                        found = True
        return total / os.sysconf("SC_CLK_TCK") if found else None


class _Usage:
    """CPU seconds of the workers and the server at the rate's start and end."""

    def __init__(self, group: WorkerGroup, server: _ServerCpu) -> None:
        self.group, self.server = group, server
        self.marks: list[tuple[float | None, float | None]] = []

    def mark(self) -> None:
        self.marks.append((self.group.session_cpu_seconds(), self.server.seconds()))

    def per_thousand(self, jobs: int) -> dict[str, float | None]:
        if len(self.marks) < 2 or jobs <= 0:
            return {"worker_cpu_per_1k": None, "server_cpu_per_1k": None}
        (w0, s0), (w1, s1) = self.marks[0], self.marks[-1]
        return {
            "worker_cpu_per_1k": None if w0 is None or w1 is None else (w1 - w0) / jobs * 1000,
            "server_cpu_per_1k": None if s0 is None or s1 is None else (s1 - s0) / jobs * 1000,
        }


def measure_io_drain(
    subject: Subject, count: int, max_seconds: float, redis_url: str | None = None
) -> dict[str, Any]:
    """Queue ``count`` I/O jobs, start one worker command, time the drain. With
    ``redis_url`` (a Redis subject), also count the server's round trips per job."""
    subject.purge()
    filled = time.perf_counter()
    subject.fill_io(count)
    fill_seconds = time.perf_counter() - filled
    counters = None
    if redis_url:
        from benchmarks.redis_stats import RedisCounters  # noqa: PLC0415 - Redis only

        counters = RedisCounters(redis_url)
        counters.start()
    marks = Marks()
    group = WorkerGroup(
        subject.worker_argv(), marks, 1, env=subject.worker_env(), cwd=subject.worker_cwd()
    )
    usage = _Usage(group, _ServerCpu(subject.store))
    try:
        group.start()
        timing = watch_drain(group, count, max_seconds, on_rate_start=usage.mark)
        usage.mark()
        peaks = group.peak_rss()
        rate = wave_rate(timing)
        ideal = subject.concurrency / IO_WAIT
        result: dict[str, Any] = {
            "jobs": count,
            "done": timing.done,
            "concurrency": subject.concurrency,
            "rate": rate,
            "ideal": ideal,
            "of_ideal": None if rate is None else rate / ideal,
            "startup_seconds": timing.startup,
            "fill_seconds": fill_seconds,
            "capped": timing.capped,
            "crashed": timing.crashed,
            "processes": len(peaks),
            "peak_rss_mb": max(peaks.values()) / 2**20 if peaks else None,
            "peak_rss_total_mb": sum(peaks.values()) / 2**20 if peaks else None,
            **usage.per_thousand(timing.done - timing.done_at_first),
        }
        if counters is not None and timing.done:
            result.update(counters.per_job(timing.done))
        group.stop()
        if timing.crashed or not timing.done:
            result["log_tail"] = group.logs()[-2000:]
    finally:
        group.stop()
        marks.remove()
        if counters is not None:
            counters.close()
    subject.purge()
    return result
