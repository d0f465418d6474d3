"""Timing machinery shared by every workload: mark files, worker processes, percentiles."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.marks import DIR_ENV, SLOT_ENV

__all__ = ["DrainTiming", "Marks", "WorkerGroup", "percentile", "proc_stat", "temp_marks"]

_POLL = 0.002  # seconds between looks at the mark files (cheap: a few stat calls)


def _shm_root() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


class Marks:
    """A fresh directory of mark files, one per worker slot."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="queuebox-bench-", dir=_shm_root()))

    def env(self, slot: int) -> dict[str, str]:
        return {DIR_ENV: str(self.path), SLOT_ENV: str(slot)}

    def counts(self) -> dict[str, int]:
        counts = {}
        with os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.isdigit():
                    counts[entry.name] = entry.stat().st_size
        return counts

    def total(self) -> int:
        return sum(self.counts().values())

    def stamps(self) -> dict[int, int]:
        """``seq -> monotonic ns`` written by ``marks.stamp``."""
        seen: dict[int, int] = {}
        for name in self.counts():
            for line in (self.path / name).read_text().splitlines():
                seq, _, when = line.partition(" ")
                if seq.isdigit() and when.isdigit():
                    seen.setdefault(int(seq), int(when))
        return seen

    def reset(self) -> None:
        for name in self.counts():
            (self.path / name).unlink()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@contextlib.contextmanager
def temp_marks() -> Iterator[Marks]:
    marks = Marks()
    try:
        yield marks
    finally:
        marks.remove()


@dataclass
class WorkerGroup:
    """Worker processes, each in its own session so that its children stop with it."""

    argv: Sequence[str]
    marks: Marks
    count: int = 1
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started_at: float = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        for slot in range(self.count):
            log = (self.marks.path / f"worker-{slot}.log").open("wb")
            env = {**os.environ, **self.env, **self.marks.env(slot)}
            self.processes.append(
                subprocess.Popen(
                    list(self.argv),
                    env=env,
                    cwd=self.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()

    def alive(self) -> bool:
        return all(process.poll() is None for process in self.processes)

    def cpu_seconds(self) -> float | None:
        """CPU time the worker processes used so far (Linux ``/proc``; ``None`` elsewhere)."""
        total = 0.0
        for process in self.processes:
            try:
                with open(f"/proc/{process.pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                return None
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def session(self) -> list[int]:
        """Every live process of the group's sessions (a worker command's children too:
        Dramatiq's worker process, a supervisor's child), from ``/proc``."""
        leaders = {process.pid for process in self.processes}
        found = []
        with contextlib.suppress(OSError), os.scandir("/proc") as entries:
            for entry in entries:
                if not entry.name.isdigit():
                    continue
                fields = proc_stat(int(entry.name))
                if fields is not None and int(fields[3]) in leaders:
                    found.append(int(entry.name))
        return sorted(found)

    def session_cpu_seconds(self) -> float | None:
        """CPU time every live process of the sessions used so far (``None`` off Linux)."""
        pids = self.session()
        if not pids:
            return None
        ticks = 0
        for pid in pids:
            fields = proc_stat(pid)
            if fields is not None:
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def peak_rss(self) -> dict[int, int]:
        """``pid -> peak resident set size in bytes`` (``VmHWM``) of every live process of
        the sessions."""
        peaks = {}
        for pid in self.session():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peaks[pid] = int(line.split()[1]) * 1024
        return peaks

    def logs(self) -> str:
        return "\n".join(
            (self.marks.path / f"worker-{slot}.log").read_text(errors="replace")
            for slot in range(len(self.processes))
        )

    def stop(self, grace: float = 5.0) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.05, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> WorkerGroup:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def proc_stat(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name: state, ppid, pgrp, session, ..."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


@dataclass
class DrainTiming:
    """When a drain of ``expected`` jobs went how far (monotonic seconds)."""

    expected: int
    started: float  # the worker processes were spawned
    first_done: float | None = None  # the first job was done
    done_at_first: int = 0  # jobs seen done at that first look
    all_active: float | None = None  # every process had done a job
    done_at_all_active: int = 0
    finished: float | None = None
    done: int = 0
    capped: bool = False
    crashed: bool = False

    @property
    def startup(self) -> float | None:
        return None if self.first_done is None else self.first_done - self.started

    @property
    def rate(self) -> float | None:
        """Jobs per second from the first job done (or, with several processes, from the
        moment all of them were working) to the last one seen."""
        end = self.finished
        if end is None or self.first_done is None:
            return None
        start, before = self.first_done, 1
        if self.all_active is not None and end - self.all_active > 0.0:
            start, before = self.all_active, self.done_at_all_active
        if end <= start or self.done <= before:
            return None
        return (self.done - before) / (end - start)


def watch_drain(
    group: WorkerGroup,
    expected: int,
    max_seconds: float,
    on_rate_start: Callable[[], None] | None = None,
) -> DrainTiming:
    """Poll the mark files until ``expected`` jobs are done, or ``max_seconds`` after the
    first one (then the rate is measured over what was done: ``capped``). ``on_rate_start``
    is called when the rate's timing starts (the first job done, then again when every
    process has done one)."""
    timing = DrainTiming(expected=expected, started=group.started_at)
    startup_deadline = group.started_at + max(60.0, max_seconds)
    marks = group.marks
    while True:
        counts = marks.counts()
        now = time.monotonic()
        done = sum(counts.values())
        if done and timing.first_done is None:
            timing.first_done, timing.done_at_first = now, done
            if on_rate_start is not None:
                on_rate_start()
        if (
            timing.all_active is None
            and len([c for c in counts.values() if c > 0]) >= group.count
            and done
        ):
            timing.all_active, timing.done_at_all_active = now, done
            if on_rate_start is not None and group.count > 1:
                on_rate_start()
        timing.done = done
        if done >= expected:
            timing.finished = now
            return timing
        if timing.first_done is not None and now - timing.first_done > max_seconds:
            timing.finished, timing.capped = now, True
            return timing
        if timing.first_done is None and now > startup_deadline:
            timing.crashed = True
            return timing
        if not group.alive():
            timing.crashed = True
            timing.finished = now if done else None
            return timing
        time.sleep(_POLL)


def wait_for_total(marks: Marks, expected: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marks.total() >= expected:
            return True
        time.sleep(_POLL)
    return False


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]
