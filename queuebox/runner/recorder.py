"""Recording outcomes: what each way a run can end means for the store, the summary, the
logs and the throughput tallies. One recorder per worker; its loop, its slots and (for a run
that would not stop) the heartbeat's thread call it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from queuebox.backends.base import Adapter, Cancellation, JobRecord
from queuebox.errors import StorageUnavailable
from queuebox.runner.claims import Success
from queuebox.runner.execution import Outcome, Prepared
from queuebox.runner.outage import StoreOutage, duration
from queuebox.runner.outcomes import WorkSummary, backoff_delay, format_error
from queuebox.runner.runs import Held, HeldJobs, Reason
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import StopFlag
from queuebox.runner.stats import StatsCollector

#: Builds a Success (a named tuple) without its keyword-taking ``__new__``: one per run.
_new_tuple = tuple.__new__

__all__ = ["Recorder"]


class Recorder:
    def __init__(
        self,
        adapter: Adapter,
        settings: WorkerSettings,
        *,
        held: HeldJobs,
        summary: WorkSummary,
        outage: StoreOutage,
        stats: StatsCollector | None,
        stop: StopFlag,
        logger: logging.Logger,
    ) -> None:
        self.adapter = adapter
        self.settings = settings
        self.held = held
        self.summary = summary
        self.outage = outage
        self.stats = stats
        self.stop = stop
        self.logger = logger
        self.done: list[Success] = []  # successes not yet handed to the claim source
        self._done_lock = threading.Lock()  # the concurrent loop adds, the store thread takes
        self._write_lock = threading.Lock()  # the heartbeat writes for a stuck run

    def record(self, outcome: Outcome) -> None:
        """Write what one run's outcome means into the store (successes go with the next
        claim)."""
        held, prepared, reason = outcome.held, outcome.prepared, outcome.reason
        if reason is None and outcome.error is None:  # a success, the common case: first
            with self._done_lock:
                success = _new_tuple(Success, (held.record, outcome.elapsed, prepared.logger))
                self.done.append(success)
        elif reason is Reason.LOCK_LOST:
            self.held.drop(held.record.id)
            self.applied(False, held.record)
        elif reason is Reason.COLD_STOP:
            self.stop.stop_now()
            self.logger.warning("cold stop: giving the running job's lock back")
            self.release([held.record])
        elif reason is Reason.CANCEL:
            took = duration(outcome.elapsed)
            self.cancelled(held, f"JobCancelled: cancelled while it ran (after {took})")
        elif reason is Reason.TIMEOUT:
            limit = f"{prepared.max_runtime:g}s"
            error = f"JobTimeout: ran longer than max_runtime ({limit})"
            self.summary.timed_out += 1
            self.raised(held, prepared, error, outcome.elapsed)
        elif outcome.error is not None:
            self.raised(held, prepared, format_error(outcome.error), outcome.elapsed)

    def take_done(self) -> list[Success]:
        """The successes waiting to be handed to the claim source, taken."""
        with self._done_lock:
            done, self.done = self.done, []
        return done

    def raised(self, held: Held, prepared: Prepared, error: str, elapsed: float) -> None:
        record = held.record
        if record.attempts >= prepared.max_attempts:
            self.failed(held, error, "failed for good", elapsed=elapsed)
            return
        delay = backoff_delay(record.attempts)
        write = self.adapter.reschedule
        if self._write(held, lambda: write(record.id, held.token, delay=delay, error=error)):
            self._tally(record, "retried", elapsed)
            self.summary.retried += 1
            self.summary.retried_ids.add(record.id)
            prepared.logger.warning(
                "raised %s id=%s attempt %d/%d after %s: %s; next attempt in %s",
                record.name,
                record.id,
                record.attempts,
                prepared.max_attempts,
                duration(elapsed),
                error.split("\n", 1)[0],
                duration(delay),
            )

    def failed(self, held: Held, error: str, log_as: str, *, elapsed: float | None = None) -> None:
        record, keep = held.record, not self.settings.delete_failed_jobs
        fail = self.adapter.fail
        if self._write(held, lambda: fail(record.id, held.token, error=error, keep=keep)):
            self._tally(record, "failed", elapsed or 0.0)
            self.summary.failed += 1
            self.summary.failed_ids.append(record.id)
            took = "" if elapsed is None else f" after {duration(elapsed)}"
            self.logger.error(
                "%s %s id=%s attempt %d%s: %s",
                log_as,
                record.name,
                record.id,
                record.attempts,
                took,
                error.split("\n", 1)[0],
            )

    def cancelled(self, held: Held, error: str) -> None:
        store, record = self.adapter, held.record
        if not isinstance(store, Cancellation):  # the job cancelled itself on such a store
            self.failed(held, error, "cancelled")
            return
        if self._write(held, lambda: store.mark_cancelled(record.id, held.token, error=error)):
            self._tally(record, "cancelled", time.monotonic() - held.started_at)
            self.summary.cancelled += 1
            self.logger.warning("cancelled %s id=%s: %s", record.name, record.id, error)

    def acknowledged(self, acked: Sequence[tuple[Success, bool]]) -> None:
        """The outcomes of a batch of acknowledgements. Per batch where it can be (one lock,
        one tally, one count): a batch of short jobs runs this for a hundred at a time."""
        if not acked:
            return
        self.held.drop_many([success.record.id for success, _ in acked])
        succeeded = [success for success, applied in acked if applied]
        for success, applied in acked:
            if not applied:
                self.applied(False, success.record)
        self.summary.succeeded += len(succeeded)
        if self.stats is not None:
            self.stats.add_successes(
                [(s.record.queue, s.record.name, s.elapsed) for s in succeeded]
            )
        logged: logging.Logger | None = None  # the jobs of a batch mostly share one logger
        for success in succeeded:
            logger = success.logger
            if logger is logged or logger.isEnabledFor(logging.INFO):
                logged = logger
                record = success.record
                logger.info(
                    "succeeded %s id=%s in %s", record.name, record.id, duration(success.elapsed)
                )

    def _tally(self, record: JobRecord, outcome: str, elapsed: float) -> None:
        if self.stats is not None:
            self.stats.add(record.queue, record.name, outcome, elapsed)

    def _write(self, held: Held, write: Callable[[], bool]) -> bool:
        """Apply a worker-owned write, retrying while the store is unreachable. ``False``
        when the lock had been taken over: the new owner's state is left alone."""
        with self._write_lock:
            try:
                applied = self.outage.retrying(write)
            finally:
                self.held.drop(held.record.id)
        return self.applied(applied, held.record)

    def applied(self, applied: bool, record: JobRecord) -> bool:
        if not applied:
            self.summary.lock_lost += 1
            self.logger.warning(
                "job %s (%s): the lock was lost (expired and taken by another worker, or the "
                "job was deleted); this worker's outcome was not recorded",
                record.id,
                record.name,
            )
        return applied

    def release(self, records: Sequence[JobRecord]) -> None:
        for record in records:
            try:
                if self.adapter.release(record.id, record.lock_token or ""):
                    self.summary.released += 1
            except StorageUnavailable as exc:
                self.logger.warning("could not give back job %s: %s", record.id, exc)
            finally:
                self.held.drop(record.id)
