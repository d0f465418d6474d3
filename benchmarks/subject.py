"""What a benchmarked system offers the workloads: enqueue, a worker command, cleanup."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["REPO", "NotOffered", "Subject"]

REPO = Path(__file__).resolve().parent.parent


class NotOffered(Exception):
    """The system has no API for this (e.g. no bulk enqueue)."""


class Subject:
    """One system (queuebox on a store, or a peer) at one setting.

    Subclasses enqueue no-op jobs with one small integer argument (``noop(i)``, which calls
    ``benchmarks.marks.mark``) and latency probes (``ping(seq)``, which calls
    ``benchmarks.marks.stamp`` first thing), and say how to start one worker process.
    Each instance works under its own key prefix, schema or file and removes it in
    ``cleanup``.
    """

    system = "?"
    store = "?"  # "redis", "postgres" or "sqlite"
    setting = "default"
    #: How this setting runs the workers, for the report.
    detail = ""
    #: Jobs one worker process keeps in flight at this setting (the I/O workload's ideal
    #: rate is this many jobs per ``marks.IO_WAIT``).
    concurrency = 1
    #: What the I/O workload's jobs are here: ``"sync"`` (they block a thread) or ``"async"``.
    io_kind = "sync"

    def setup(self) -> None:
        """Create what the subject needs (schema, queue); called once before the workloads."""

    def enqueue_each(self, start: int, count: int) -> None:
        """Enqueue ``noop(i)`` for ``i`` in ``start .. start + count``, one call per job."""
        raise NotImplementedError

    def enqueue_bulk(self, start: int, count: int) -> None:
        """Enqueue the same jobs through the system's bulk API (``NotOffered`` if none)."""
        raise NotOffered

    def enqueue_ping(self, seq: int) -> None:
        raise NotImplementedError

    def fill(self, count: int) -> None:
        """Put ``count`` waiting no-op jobs in the queue, the fastest way offered."""
        try:
            for start in range(0, count, 10_000):
                self.enqueue_bulk(start, min(10_000, count - start))
        except NotOffered:
            self.enqueue_each(0, count)

    def fill_io(self, count: int) -> None:
        """Put ``count`` waiting I/O jobs in the queue (``marks.wait_then_mark`` or, for an
        async system, ``marks.await_then_mark``), the fastest way offered."""
        raise NotOffered

    def worker_argv(self) -> list[str]:
        """The command line of one worker process."""
        raise NotImplementedError

    def worker_env(self) -> dict[str, str]:
        """Extra environment of the worker processes (the repository is always importable)."""
        return {}

    def worker_cwd(self) -> str | None:
        """The folder the worker processes start in (``None``: the driver's own)."""
        return None

    def purge(self) -> None:
        """Delete every job this subject stored (between workloads)."""

    def cleanup(self) -> None:
        """Remove everything this subject created."""

    def close(self) -> None:
        """Close client connections."""


def python_env() -> dict[str, str]:
    """Environment that lets a worker started with any interpreter import ``benchmarks``."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), "PYTHONUNBUFFERED": "1"}


def python() -> str:
    return sys.executable
