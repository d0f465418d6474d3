"""A worker run by the supervisor: it reports what it does, and retires when told to.

``ManagedWorker`` is the core ``Worker`` with two additions around each job:

- a status file in the run folder (``workers/<pid>.json``: the job running now and since
  when, jobs done), which ``queuebox status`` reads. The job loop only sets a few attributes
  and an event; a thread writes the file soon after a change, at most four times a second;
- recycling: after ``max_jobs`` jobs, or once its resident memory passes ``max_memory_mb``
  (checked between jobs), the worker stops as on a warm stop (claimed jobs not yet started
  are given back) and exits 0; the supervisor starts a fresh one at once.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from queuebox.backends.base import Adapter, JobRecord
from queuebox.runner.execution import Outcome
from queuebox.runner.rundir import write_json
from queuebox.runner.runs import Held
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import StopFlag
from queuebox.runner.worker import Worker, WorkSummary

__all__ = ["Limits", "ManagedWorker", "StatusReporter", "resident_memory_mb"]

_REPORT_INTERVAL = 0.25


@dataclass(frozen=True)
class Limits:
    """When a worker retires so that a fresh process replaces it. ``None``: never."""

    max_jobs: int | None = None
    max_memory_mb: float | None = None

    def child_args(self) -> list[str]:
        args: list[str] = []
        if self.max_jobs is not None:
            args += ["--max-jobs", str(self.max_jobs)]
        if self.max_memory_mb is not None:
            args += ["--max-memory", f"{self.max_memory_mb:g}"]
        return args


def resident_memory_mb() -> float:
    """This process's resident memory now (Linux), else its peak (``getrusage``)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class StatusReporter:
    """Keeps ``path`` describing this worker; the worker thread only sets attributes."""

    def __init__(
        self, path: Path, *, label: str, queues: tuple[str, ...] | None, supervisor: int | None
    ) -> None:
        self.path = path
        self._base: dict[str, Any] = {
            "pid": os.getpid(),
            "label": label,
            "queues": None if queues is None else list(queues),
            "supervisor": supervisor,
            "started_at": time.time(),
        }
        #: The jobs running now, by id (several with concurrency above 1).
        self.running: dict[str, dict[str, Any]] = {}
        self.jobs_done = 0
        self._lock = threading.Lock()
        self.exit_reason: str | None = None
        self._version = 0
        self._written = -1
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queuebox-status", daemon=True)

    def start(self) -> None:
        self._write()
        self._thread.start()

    def job_started(self, record: JobRecord, slot: int) -> None:
        job = {"id": record.id, "name": record.name, "queue": record.queue, "slot": slot}
        job["since"] = time.time()
        with self._lock:
            self.running[record.id] = job
        self._changed()

    def job_finished(self, record: JobRecord) -> None:
        with self._lock:
            self.running.pop(record.id, None)
            self.jobs_done += 1
        self._changed()

    @property
    def job(self) -> dict[str, Any] | None:
        """The job that has run longest of those running now."""
        with self._lock:
            jobs = sorted(self.running.values(), key=lambda job: job["since"])
        return jobs[0] if jobs else None

    def _changed(self) -> None:
        self._version += 1
        self._wake.set()

    def stop(self, exit_reason: str | None) -> None:
        """Write the last status; it stays for the supervisor, which removes it."""
        self.exit_reason = exit_reason
        self._stopped.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self._write()

    def snapshot(self) -> dict[str, Any]:
        return {
            **self._base,
            "job": self.job,
            "jobs": sorted(self.running.values(), key=lambda job: job["slot"]),
            "jobs_done": self.jobs_done,
            "exit_reason": self.exit_reason,
            "updated_at": time.time(),
        }

    def _run(self) -> None:
        # Write soon after a change, but no more often than every _REPORT_INTERVAL.
        while True:
            self._wake.wait()
            if self._stopped.is_set():
                return
            self._wake.clear()
            if self._written != self._version:
                self._write()
            if self._stopped.wait(_REPORT_INTERVAL):
                return

    def _write(self) -> None:
        version = self._version
        try:
            write_json(self.path, self.snapshot())
        except OSError as exc:  # a full disk must not stop the jobs
            logging.getLogger("queuebox.worker").warning("cannot write %s: %s", self.path, exc)
        self._written = version


class ManagedWorker(Worker):
    """A ``Worker`` that reports its status and retires after its job or memory limit."""

    def __init__(
        self,
        adapter: Adapter,
        settings: WorkerSettings,
        *,
        limits: Limits,
        reporter: StatusReporter | None,
        stop: StopFlag,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(adapter, settings, stop=stop, logger=logger)
        self.limits = limits
        self.reporter = reporter
        self.jobs_done = 0
        #: Why the worker retired by itself (``None``: it was asked to stop).
        self.retired: str | None = None

    def run(self) -> WorkSummary:
        if self.reporter is not None:
            self.reporter.start()
        try:
            return super().run()
        finally:
            if self.reporter is not None:
                self.reporter.stop(self.retired)

    def job_started(self, held: Held) -> None:
        if self.reporter is not None:
            self.reporter.job_started(held.record, held.slot)

    def job_finished(self, outcome: Outcome) -> None:
        self.jobs_done += 1
        if self.reporter is not None:
            self.reporter.job_finished(outcome.record)
        self._check_limits()

    def _check_limits(self) -> None:
        limits = self.limits
        if limits.max_jobs is not None and self.jobs_done >= limits.max_jobs:
            self._retire(f"ran {self.jobs_done} jobs (--max-jobs {limits.max_jobs})")
        elif limits.max_memory_mb is not None:
            used = resident_memory_mb()
            if used > limits.max_memory_mb:
                self._retire(f"uses {used:.0f} MB (--max-memory {limits.max_memory_mb:g} MB)")

    def _retire(self, reason: str) -> None:
        if self.stop.stopping:
            return
        self.retired = reason
        self.logger.info("retiring: %s; a fresh worker takes over", reason)
        self.stop.request()
