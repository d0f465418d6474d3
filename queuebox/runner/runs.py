"""The jobs a worker holds, and how one running job is stopped from another thread.

Every claimed job is ``Held`` from its claim until its outcome is recorded: the heartbeat
renews all held locks together, asks the store which of them were cancelled, and stops
runs that overran their ``max_runtime``. A held job is waiting (claimed, not started),
running (in a thread, or as a task of an event loop), or done (its success waits for its
acknowledgement).

Stopping a run:

* an async job's task is cancelled (``CancelledError`` inside it, which the worker turns
  into the reason: timeout, cancel, cold stop);
* a sync job gets the reason raised inside its thread (``PyThreadState_SetAsyncExc``). That
  takes effect at the next Python instruction the thread runs, so a job blocked inside C code
  (a socket read without a timeout, ``time.sleep``) stops only when that call returns. A run
  still going ``stop_grace`` seconds after it was asked to stop is stuck: the worker records
  its outcome and the process ends itself, so that its parent starts a fresh one.

An interruption is never delivered after the run has finished: the run's lock is held while
the interruption is set, and a finishing run takes the same lock, marks itself finished and
passes a checkpoint (a Python call) at which an interruption set just before is raised,
still inside the run's own ``try``.
"""

from __future__ import annotations

import asyncio
import ctypes
import enum
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from queuebox.backends.base import JobRecord
from queuebox.interrupts import JobCancelled, JobInterrupted, JobTimeout
from queuebox.runner.signals import ColdStop

__all__ = ["Held", "HeldJobs", "Phase", "Reason", "checkpoint", "reason_of"]


class Reason(enum.Enum):
    """Why a run is being stopped."""

    TIMEOUT = JobTimeout
    CANCEL = JobCancelled
    COLD_STOP = ColdStop
    #: The lock was taken over (it lapsed while the store was unreachable): another worker
    #: may run the job now, so this run stops and records nothing.
    LOCK_LOST = JobInterrupted


class Phase(enum.Enum):
    WAITING = "waiting"  # claimed, not started
    RUNNING = "running"
    DONE = "done"  # its outcome is known; a success waits for its acknowledgement


@dataclass(eq=False, slots=True)
class Held:
    """One job a worker holds."""

    record: JobRecord
    renewed_at: float  # monotonic: the claim, then each renewal the store confirmed
    phase: Phase = Phase.WAITING
    slot: int = 0
    started_at: float = 0.0  # monotonic
    deadline: float = float("inf")  # monotonic: started_at + max_runtime
    max_runtime: float = float("inf")
    thread_id: int | None = None  # a sync run's thread
    task: asyncio.Task[Any] | None = None  # an async run's task
    loop: asyncio.AbstractEventLoop | None = None
    instance: Any = None  # the Job instance, for ``self.cancelled``
    prepared: Any = None  # its execution.Prepared: what the outcome of a stuck run needs
    cancel_requested: bool = False
    stop_reason: Reason | None = None
    stop_asked_at: float = 0.0  # monotonic
    lost: bool = False  # a renewal found the lock taken over
    stuck: bool = False  # did not stop within the grace period
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def token(self) -> str:
        return self.record.lock_token or ""

    def start(self, slot: int, max_runtime: float, instance: Any, prepared: Any) -> None:
        now = time.monotonic()
        with self.lock:
            self.phase, self.slot, self.instance = Phase.RUNNING, slot, instance
            self.prepared = prepared
            self.started_at, self.max_runtime = now, max_runtime
            self.deadline = now + max_runtime
            if self.cancel_requested and instance is not None:
                instance.cancelled = True

    def finish(self) -> None:
        """The run ended by itself: no interruption is delivered after this returns."""
        with self.lock:
            self.phase = Phase.DONE
        checkpoint()  # raises here an interruption set just before the lock was ours

    def interrupt(self, reason: Reason) -> bool:
        """Ask the run to stop for ``reason``; ``False`` when it is not running."""
        with self.lock:
            if self.phase is not Phase.RUNNING:
                return False
            if self.stop_reason is None:
                self.stop_reason, self.stop_asked_at = reason, time.monotonic()
            if reason is Reason.CANCEL and self.instance is not None:
                self.instance.cancelled = True
            if self.task is not None and self.loop is not None:
                self.loop.call_soon_threadsafe(self.task.cancel, reason.value.__name__)
            elif self.thread_id is not None:
                _raise_in_thread(self.thread_id, reason.value)
            return True


class HeldJobs:
    """The jobs one worker holds, shared by its loop, its runs and its heartbeat."""

    def __init__(self) -> None:
        self._held: dict[str, Held] = {}
        self._lock = threading.Lock()

    def hold(self, record: JobRecord) -> Held:
        held = Held(record, renewed_at=time.monotonic())
        with self._lock:
            self._held[record.id] = held
        return held

    def hold_many(self, records: Sequence[JobRecord]) -> list[Held]:
        renewed_at = time.monotonic()
        helds = [Held(record, renewed_at=renewed_at) for record in records]
        with self._lock:
            for held in helds:
                self._held[held.record.id] = held
        return helds

    def get(self, job_id: str) -> Held | None:
        with self._lock:
            return self._held.get(job_id)

    def drop(self, job_id: str) -> None:
        with self._lock:
            self._held.pop(job_id, None)

    def drop_many(self, job_ids: list[str]) -> None:
        with self._lock:
            for job_id in job_ids:
                self._held.pop(job_id, None)

    def all(self) -> list[Held]:
        with self._lock:
            return list(self._held.values())

    def running(self) -> list[Held]:
        return [held for held in self.all() if held.phase is Phase.RUNNING]

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    def __contains__(self, job_id: object) -> bool:
        with self._lock:
            return job_id in self._held


def checkpoint() -> None:
    """A Python-level call: a pending interruption of this thread is raised at its start."""


def _raise_in_thread(thread_id: int, exception: type[BaseException]) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exception)
    )


def reason_of(exc: BaseException, held: Held) -> Reason | None:
    """Why a run that raised ``exc`` stopped: a requested stop, or an interruption the job
    raised itself; ``None`` for an ordinary error."""
    if isinstance(exc, asyncio.CancelledError | JobInterrupted | ColdStop):
        if held.stop_reason is not None:
            return held.stop_reason
        if isinstance(exc, JobCancelled):
            return Reason.CANCEL
        if isinstance(exc, JobTimeout):
            return Reason.TIMEOUT
        if isinstance(exc, ColdStop):
            return Reason.COLD_STOP
    return None
