"""Lock renewal from a thread of its own, so a CPU-bound job cannot starve it.

Every third of the lease the heartbeat extends the lock of each job the worker holds (the one
running and the ones claimed in the same batch), all in one ``extend_many`` call. It stops
renewing a job once it has been held for ``max_runtime``: that lock then expires and another
worker may take the job, which is how a run that never ends is given up on.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from queuebox.backends.base import Adapter, JobRecord
from queuebox.errors import QueueboxError

__all__ = ["Heartbeat"]


@dataclass
class _Held:
    record: JobRecord
    token: str
    give_up_at: float  # monotonic
    renewed_at: float  # monotonic: the claim, then each renewal the store confirmed
    lost: bool = False


class Heartbeat:
    def __init__(
        self, adapter: Adapter, *, lease: float, max_runtime: float, logger: logging.Logger
    ) -> None:
        self._adapter = adapter
        self._lease = lease
        self._max_runtime = max_runtime
        self._logger = logger
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, record: JobRecord) -> None:
        now = time.monotonic()
        held = _Held(record, record.lock_token or "", now + self._max_runtime, renewed_at=now)
        with self._lock:
            self._held[record.id] = held
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="queuebox-heartbeat", daemon=True
            )
            self._thread.start()

    def drop(self, job_id: str) -> None:
        with self._lock:
            self._held.pop(job_id, None)

    def holds(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._held

    def lost(self, job_id: str) -> bool:
        """Whether a renewal found the lock already taken by another worker."""
        with self._lock:
            held = self._held.get(job_id)
            return held is not None and held.lost

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        interval = self._lease / 3
        while not self._stopped.wait(interval):
            with self._lock:
                due = [held for held in self._held.values() if not held.lost]
            now = time.monotonic()
            renew = []
            for held in due:
                if now >= held.give_up_at:
                    self._give_up(held)
                else:
                    renew.append(held)
            if renew:
                self._renew(renew)

    def _renew(self, batch: list[_Held]) -> None:
        """Renew every lock in one call (``extend_many``: one round trip on most stores)."""
        try:
            renewed = self._adapter.extend_many(
                [(held.record.id, held.token) for held in batch], lease=self._lease
            )
        except QueueboxError as exc:
            for held in batch:
                self._unrenewed(held, exc)
            return
        now = time.monotonic()
        for held, applied in zip(batch, renewed, strict=True):
            held.renewed_at = now
            if not applied:
                held.lost = True
                self._logger.warning(
                    "job %s (%s): the lock was taken over by another worker; this worker's "
                    "outcome for it will be refused",
                    held.record.id,
                    held.record.name,
                )

    def _unrenewed(self, held: _Held, exc: QueueboxError) -> None:
        if time.monotonic() - held.renewed_at < self._lease:
            # The next beat tries again; the lease is three beats long.
            self._logger.warning("could not renew the lock of job %s: %s", held.record.id, exc)
            return
        # The lease has lapsed: another worker may own the job now. Stop renewing on its
        # behalf; this worker's outcome is written only if the token still matches.
        held.lost = True
        self._logger.error(
            "job %s (%s): no renewal for longer than the lease (%.0fs); the lock has "
            "lapsed and another worker may run the job",
            held.record.id,
            held.record.name,
            self._lease,
        )

    def _give_up(self, held: _Held) -> None:
        held.lost = True  # stop renewing: the lock expires within one lease
        self._logger.error(
            "job %s (%s) has run longer than max_runtime (%.0fs); its lock is no longer "
            "renewed, so another worker may run it again",
            held.record.id,
            held.record.name,
            self._max_runtime,
        )
