"""The heartbeat: a thread of its own (so that a CPU-bound or blocked job cannot starve it)
that looks after every job a worker holds.

* Every third of the lease it renews all held locks in one ``extend_many`` call. A held
  job's lock is renewed for as long as the worker holds it, so a run never overlaps itself
  because its own lease lapsed: only a dead (or frozen) worker's jobs are taken over. A
  renewal that finds the lock taken over (it lapsed while the store was unreachable) stops
  the run, whose outcome the store would refuse anyway.
* About four times a second, while jobs run on a store that declares ``Cancellation``, it
  asks which held jobs were cancelled and stops those runs (``JobCancelled``); a cancelled
  job that has not started yet is skipped when its turn comes.
* It stops runs that passed their ``max_runtime`` (``JobTimeout``), and reports a run that
  is still going ``stop_grace`` seconds after it was asked to stop to ``on_stuck``.
* Every ``BEAT_INTERVAL`` seconds it calls ``on_beat`` (the worker records itself, and its
  throughput tallies, in a store that declares ``WorkerRegistry``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from queuebox.backends.base import Adapter, Cancellation
from queuebox.errors import QueueboxError
from queuebox.runner.runs import Held, HeldJobs, Phase, Reason

__all__ = ["BEAT_INTERVAL", "CANCEL_CHECK_INTERVAL", "Heartbeat"]

#: Seconds between two "was any of these cancelled?" reads while jobs run.
CANCEL_CHECK_INTERVAL = 0.25
#: Seconds between two registry beats.
BEAT_INTERVAL = 5.0


class Heartbeat:
    def __init__(
        self,
        adapter: Adapter,
        held: HeldJobs,
        *,
        lease: float,
        stop_grace: float,
        logger: logging.Logger,
        on_stuck: Callable[[Held], None],
        on_beat: Callable[[], None] | None = None,
    ) -> None:
        self._adapter = adapter
        self._held = held
        self._lease = lease
        self._stop_grace = stop_grace
        self._logger = logger
        self._on_stuck = on_stuck
        self._on_beat = on_beat
        self._cancellation = adapter if isinstance(adapter, Cancellation) else None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def start(self) -> None:
        """Start the thread (once; later calls do nothing)."""
        if self._thread is not None:  # every run calls this: the common case takes no lock
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="queuebox-heartbeat", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        renew_every = self._lease / 3
        tick = min(CANCEL_CHECK_INTERVAL, renew_every)
        next_renewal = time.monotonic() + renew_every
        next_beat = 0.0  # at once: the registry shows a worker as soon as it starts
        while not self._stopped.is_set():
            if self._on_beat is not None and time.monotonic() >= next_beat:
                next_beat = time.monotonic() + BEAT_INTERVAL
                self._beat(self._on_beat)
            if self._stopped.wait(tick):
                return
            held = self._held.all()
            if not held:
                continue
            now = time.monotonic()
            if now >= next_renewal:
                next_renewal = now + renew_every
                self._renew([job for job in held if not job.lost])
            running = [job for job in held if job.phase is Phase.RUNNING]
            if self._cancellation is not None and running:
                self._check_cancellations(self._cancellation, held)
            for job in running:
                self._watch(job, now)

    def _beat(self, beat: Callable[[], None]) -> None:
        try:
            beat()
        except QueueboxError as exc:
            self._logger.debug("could not record this worker in the registry: %s", exc)
        except Exception:  # a store's bug must not stop the heartbeat
            self._logger.exception("the store's registry beat raised")

    # -- renewals ---------------------------------------------------------------------------

    def _renew(self, batch: list[Held]) -> None:
        if not batch:
            return
        try:
            renewed = self._adapter.extend_many(
                [(job.record.id, job.token) for job in batch], lease=self._lease
            )
        except QueueboxError as exc:
            for job in batch:
                self._unrenewed(job, exc)
            return
        now = time.monotonic()
        for job, applied in zip(batch, renewed, strict=True):
            if applied:
                job.renewed_at = now
                continue
            job.lost = True
            self._logger.warning(
                "job %s (%s): the lock was taken over by another worker; this worker stops "
                "its run and records nothing",
                job.record.id,
                job.record.name,
            )
            job.interrupt(Reason.LOCK_LOST)

    def _unrenewed(self, job: Held, exc: QueueboxError) -> None:
        if time.monotonic() - job.renewed_at < self._lease:
            # The next beat tries again; the lease is three beats long.
            self._logger.warning("could not renew the lock of job %s: %s", job.record.id, exc)
            return
        # The lease has lapsed: another worker may own the job now. Stop renewing on its
        # behalf, and stop the run; this worker's outcome is written only if the token
        # still matches.
        job.lost = True
        self._logger.error(
            "job %s (%s): no renewal for longer than the lease (%.0fs); the lock has "
            "lapsed and another worker may run the job, so this run stops",
            job.record.id,
            job.record.name,
            self._lease,
        )
        job.interrupt(Reason.LOCK_LOST)

    # -- cancellations and timeouts ---------------------------------------------------------

    def _check_cancellations(self, store: Cancellation, held: list[Held]) -> None:
        candidates = [job for job in held if job.phase is not Phase.DONE]
        try:
            cancelled = store.cancel_requested([job.record.id for job in candidates])
        except QueueboxError as exc:
            self._logger.debug("could not check for cancellations: %s", exc)
            return
        for job in candidates:
            if job.record.id not in cancelled or job.cancel_requested:
                continue
            job.cancel_requested = True
            if job.interrupt(Reason.CANCEL):
                self._logger.warning(
                    "cancelling %s id=%s (slot %d): queuebox.cancel was called while it ran",
                    job.record.name,
                    job.record.id,
                    job.slot,
                )

    def _watch(self, job: Held, now: float) -> None:
        if job.stop_reason is None and now >= job.deadline:
            if job.interrupt(Reason.TIMEOUT):
                self._logger.error(
                    "stopping %s id=%s (slot %d): it ran longer than max_runtime (%gs)",
                    job.record.name,
                    job.record.id,
                    job.slot,
                    job.max_runtime,
                )
        elif (
            job.stop_reason is not None
            and not job.stuck
            and now - job.stop_asked_at >= self._stop_grace
        ):
            job.stuck = True
            self._on_stuck(job)
