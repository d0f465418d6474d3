"""The worker: claim due jobs, run them, record each outcome.

Policy lives here, once, for every store: on success the job is deleted (or kept); when
``perform`` raises, the job runs again after ``attempts ** 4`` seconds until ``max_attempts``,
then it is failed; an unknown job name or an undecodable payload is failed at once.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import socket
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from queuebox import config, registry
from queuebox.backends.base import WORKER_LOST, Adapter, JobRecord
from queuebox.errors import PayloadError, StorageUnavailable, UnknownJob
from queuebox.hooks import run_with_hooks
from queuebox.job import Job
from queuebox.payload import decode_handler
from queuebox.runner.heartbeat import Heartbeat
from queuebox.runner.prefetch import Acked, Batch, Prefetcher, Receive
from queuebox.runner.recurring import RecurringScheduler
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import ColdStop, StopFlag

__all__ = ["MAX_ERROR_CHARS", "WorkSummary", "Worker", "backoff_delay", "format_error"]

MAX_ERROR_CHARS = 8192
_MAX_MESSAGE_CHARS = 2048
_IDLE_CHUNK = 1.0  # the longest a stop request waits for an idle worker to notice it
_RECONNECT_MAX_DELAY = 30.0
_HOOK_METHODS = ("before_perform", "after_perform", "after_success", "after_failure")

T = TypeVar("T")


def backoff_delay(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones (RedwoodJS's rule)."""
    return float(attempts**4)


def format_error(exc: BaseException, limit: int = MAX_ERROR_CHARS) -> str:
    """``Type: message`` then the traceback, cut to ``limit`` characters.

    A long message is cut first, then the traceback's oldest frames, which keeps the frame
    that raised.
    """
    message = str(exc)
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[:_MAX_MESSAGE_CHARS] + " [...]"
    head = f"{type(exc).__qualname__}: {message}" if message else type(exc).__qualname__
    trace = "".join(traceback.format_exception(exc))
    room = limit - len(head) - 1
    if room <= 0:
        return head[:limit]
    if len(trace) > room:
        marker = "[... older frames cut ...]\n"
        trace = marker + trace[len(trace) - room + len(marker) :]
    return f"{head}\n{trace}"


@dataclass
class WorkSummary:
    """What a worker did; ``retried`` counts attempts that raised and will run again."""

    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    lock_lost: int = 0
    released: int = 0
    failed_ids: list[str] = field(default_factory=list)

    @property
    def raised(self) -> bool:
        return self.retried > 0 or self.failed > 0

    def add(self, other: WorkSummary) -> None:
        self.succeeded += other.succeeded
        self.retried += other.retried
        self.failed += other.failed
        self.lock_lost += other.lock_lost
        self.released += other.released
        self.failed_ids.extend(other.failed_ids)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Runs jobs from ``settings.queues`` until stopped (``run``) or out of due work
    (``work_off``). Not thread-safe: one worker per thread of control."""

    def __init__(
        self,
        adapter: Adapter,
        settings: WorkerSettings | None = None,
        *,
        worker_id: str | None = None,
        logger: logging.Logger | None = None,
        stop: StopFlag | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.adapter = adapter
        self.settings = settings or WorkerSettings()
        self.worker_id = worker_id or default_worker_id()
        self.logger = logger or logging.getLogger("queuebox.worker")
        self.stop = stop or StopFlag()
        self.summary = WorkSummary()
        self._on_idle = on_idle
        self._lease = min(self.settings.lease, self.settings.max_runtime)
        self._heartbeat = Heartbeat(
            adapter, lease=self._lease, max_runtime=self.settings.max_runtime, logger=self.logger
        )
        self._recurring = RecurringScheduler(adapter, self.settings.queues, self.logger)
        self._succeeded: list[Acked] = []
        self._global_hooks = True  # read again for every batch
        #: Jobs claimed while waiting (``wait_and_claim``), run by the next ``run_once``.
        self._pending: list[JobRecord] = []
        # Stores that claim with the wake-up, or with a batch's acknowledgement, in one round
        # trip (Redis): used by a worker on one queue.
        one_queue = self.settings.queues is not None and len(self.settings.queues) == 1
        self._wait_and_claim: Callable[..., list[JobRecord]] | None = (
            getattr(adapter, "wait_and_claim", None) if one_queue else None
        )
        self._complete_and_claim: Callable[..., tuple[list[bool], list[JobRecord]]] | None = (
            getattr(adapter, "complete_and_claim", None) if one_queue else None
        )
        #: Inside run() and work_off(): a batch's successes are acknowledged together with the
        #: next claim (the heartbeat keeps their locks until then); run_once() alone flushes.
        self._defer_acks = False
        #: With batches of several jobs, the next batch is claimed (and the last one
        #: acknowledged) while this one runs: see queuebox.runner.prefetch.
        self._send_claim: Callable[..., Receive] | None = (
            getattr(adapter, "send_complete_and_claim", None) if one_queue else None
        )
        self._prefetcher = (
            Prefetcher(self._send_batch)
            if self._send_claim is not None and self.settings.batch_size > 1
            else None
        )
        self._has_own_hooks: dict[type[Job], bool] = {}
        self._unavailable_since: float | None = None
        self._reconnect_attempts = 0

    # -- loops ------------------------------------------------------------------------------

    def run(self) -> WorkSummary:
        """Work until a stop is requested."""
        self._defer_acks = self._complete_and_claim is not None
        try:
            while not self.stop.stopping:
                self._schedule_recurring()
                if self.run_once() == 0 and not self.stop.stopping:
                    if self._on_idle is not None:
                        self._on_idle()
                    self._wait_for_work()
        finally:
            self._defer_acks = False
            self._pending += self._abandon_prefetch()
            self._flush_successes()
            if self._pending:  # claimed with the last wake-up or prefetched, then stopped
                pending, self._pending = self._pending, []
                self._release(pending)
            self._heartbeat.stop()
        return self.summary

    def work_off(self, progress: Callable[[WorkSummary], None] | None = None) -> WorkSummary:
        """Run every job that is due now, then return (jobs retried later are left)."""
        self._defer_acks = self._complete_and_claim is not None
        try:
            while not self.stop.stopping and self.run_once() > 0:
                if progress is not None:
                    progress(self.summary)
        finally:
            self._defer_acks = False
            prefetched = self._abandon_prefetch()
            self._flush_successes()
            self._release(prefetched)
            self._heartbeat.stop()
        return self.summary

    def run_once(self) -> int:
        """Claim one batch and run it; return how many jobs were claimed."""
        jobs = self._claim()
        for record in jobs:
            self._heartbeat.hold(record)
        if jobs:
            self._global_hooks = any(config.get_hooks(event) for event in config.HOOK_EVENTS)
        try:
            for index, record in enumerate(jobs):
                if self.stop.stopping:
                    self._release(jobs[index:])
                    break
                self._run_job(record)
        except ColdStop:
            self.stop.stop_now()
            self.logger.warning("cold stop: giving the running job's lock back")
            succeeded = {record.id for record, _, _ in self._succeeded}
            self._release(
                [
                    record
                    for record in jobs
                    if self._heartbeat.holds(record.id) and record.id not in succeeded
                ]
            )
        finally:
            if not self._defer_acks or self.stop.stopping:
                self._flush_successes()
        return len(jobs)

    # -- one job ----------------------------------------------------------------------------

    def _run_job(self, record: JobRecord) -> None:
        try:
            call = decode_handler(record.handler)
            job_class = registry.get(call.name)
        except (PayloadError, UnknownJob) as exc:
            self._finish_failed(record, f"{type(exc).__name__}: {exc}", log_as="unrunnable")
            return
        max_attempts = job_class.max_attempts or self.settings.max_attempts
        if record.attempts > max_attempts:
            # Only a reclaim pushes attempts past the limit: the worker that held the job
            # died (or stalled) on its last allowed attempt.
            reason = (record.last_error or WORKER_LOST).split("\n", 1)[0]
            self._finish_failed(
                record, f"{reason}; out of attempts ({max_attempts})", log_as="out of attempts"
            )
            return
        logger = job_class.logger or self.logger
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "started %s id=%s queue=%s attempt %d/%d",
                record.name,
                record.id,
                record.queue,
                record.attempts,
                max_attempts,
            )
        started = time.perf_counter()
        instance = job_class()
        instance.record = record
        instance.will_retry = record.attempts < max_attempts
        self.stop.job_running = True
        try:
            if self._global_hooks or self._own_hooks(job_class):
                run_with_hooks(instance, call.args, call.kwargs, logger)
            else:  # no hook to run: what run_with_hooks does, without the empty hook calls
                instance.args, instance.kwargs = call.args, call.kwargs
                instance.perform(*call.args, **call.kwargs)
        except ColdStop:
            raise
        except KeyboardInterrupt:
            # An embedding application without our signal handlers: treat Ctrl-C as a
            # cold stop so the lock goes back at once.
            self.stop.stop_now()
            raise ColdStop("KeyboardInterrupt") from None
        except Exception as exc:
            elapsed = time.perf_counter() - started
            self._record_error(record, exc, max_attempts, elapsed, logger)
            return
        finally:
            self.stop.job_running = False
        # Successes are recorded together when the batch ends (one round trip for the batch);
        # until then the heartbeat keeps their locks. A crash before that runs them again,
        # which at-least-once allows.
        self._succeeded.append((record, time.perf_counter() - started, logger))
        if len(self._succeeded) > self.settings.batch_size:  # a bound; batches end sooner
            self._flush_successes()

    def _own_hooks(self, job_class: type[Job]) -> bool:
        """Whether ``job_class`` overrides one of ``Job``'s (empty) lifecycle hooks."""
        found = self._has_own_hooks.get(job_class)
        if found is None:
            found = self._has_own_hooks[job_class] = any(
                getattr(job_class, hook) is not getattr(Job, hook) for hook in _HOOK_METHODS
            )
        return found

    def _flush_successes(self, claim: bool = False) -> list[JobRecord]:
        """Acknowledge the jobs that succeeded; with ``claim``, in the same round trip as the
        next claim (``complete_and_claim``), whose jobs are returned."""
        if not self._succeeded:
            return []
        done, self._succeeded = self._succeeded, []
        acks = [(record.id, record.lock_token or "") for record, _, _ in done]
        keep = not self.settings.delete_successful_jobs
        claimed: list[JobRecord] = []
        try:
            if claim and self._complete_and_claim is not None:
                results, claimed = self._store_call(lambda: self._ack_and_claim(acks))
            else:
                results = self._store_call(lambda: self.adapter.complete_many(acks, keep=keep))
        finally:
            for record, _, _ in done:
                self._heartbeat.drop(record.id)
        self._log_successes(done, results)
        return claimed

    def _ack_and_claim(self, acks: Sequence[tuple[str, str]]) -> tuple[list[bool], list[JobRecord]]:
        """Acknowledge ``acks`` and claim the next batch in one round trip (a worker on one
        queue of a store with ``complete_and_claim``)."""
        if self._complete_and_claim is None:
            raise RuntimeError("complete_and_claim needs a store that has it")
        return self._complete_and_claim(acks, **self._next_batch())

    def _send_batch(self, acks: Sequence[tuple[str, str]]) -> Receive:
        """Send "acknowledge ``acks``, claim the next batch"; return the reply's reader."""
        if self._send_claim is None:
            raise RuntimeError("send_complete_and_claim needs a store that has it")
        return self._send_claim(acks, **self._next_batch())

    def _next_batch(self) -> dict[str, Any]:
        """The options of ``complete_and_claim`` and ``send_complete_and_claim`` (which a
        worker on one queue uses) besides the acknowledgements."""
        if not self.settings.queues or len(self.settings.queues) != 1:
            raise RuntimeError("claiming with the acknowledgements needs a worker on one queue")
        return {
            "keep": not self.settings.delete_successful_jobs,
            "worker_id": self.worker_id,
            "queue": self.settings.queues[0],
            "limit": self.settings.batch_size,
            "lease": self._lease,
        }

    def _start_prefetch(self) -> None:
        """Inside run() and work_off(), with a batch in hand: acknowledge the last batch and
        claim the next one while this one runs."""
        prefetcher = self._prefetcher
        if (
            prefetcher is None
            or prefetcher.in_flight is not None
            or not self._defer_acks
            or self.stop.stopping
        ):
            return
        done, self._succeeded = self._succeeded, []
        try:
            prefetcher.start(done)
        except StorageUnavailable:  # nothing was sent: acknowledge with the next claim
            self._succeeded = done + self._succeeded

    def _collect_prefetch(self) -> tuple[Batch, float] | None:
        """Read the round trip in flight: log its acknowledgements, return its batch and
        when that batch was claimed (``None`` when nothing is in flight)."""
        in_flight = self._prefetcher.take() if self._prefetcher is not None else None
        if in_flight is None:
            return None

        def send_again() -> tuple[list[bool], Batch]:
            return self._send_batch(in_flight.acks)()

        try:
            try:
                results, batch = in_flight.receive()
            except StorageUnavailable:
                # Whether it reached the store is unknown: send it again, as a synchronous
                # call would be (an acknowledgement applied twice is refused the second time).
                results, batch = self._store_call(send_again)
        finally:
            for record, _, _ in in_flight.done:
                self._heartbeat.drop(record.id)
        self._log_successes(in_flight.done, results)
        return batch, in_flight.sent_at

    def _prefetched(self) -> list[JobRecord]:
        """The batch claimed ahead, if one came. The next round trip goes out before this
        batch is decoded, so that the store's work overlaps the worker's."""
        try:
            collected = self._collect_prefetch()
        except StorageUnavailable as exc:  # only when stopping: see _store_call
            self._store_down(exc)
            return []
        if collected is None or not collected[0]:
            return []
        batch, sent_at = collected
        self._start_prefetch()
        records = batch.records()
        if time.monotonic() - sent_at > self._lease / 3:
            records = self._still_owned(records)
        return records

    def _still_owned(self, records: list[JobRecord]) -> list[JobRecord]:
        """Renew the locks of a batch claimed ahead that waited long (behind a slow batch),
        keeping the jobs whose lock this worker still owns."""
        owned = []
        for record in records:
            extend = functools.partial(
                self.adapter.extend, record.id, record.lock_token or "", lease=self._lease
            )
            renewed = self._store_call(extend)
            if self._applied(renewed, record):
                owned.append(record)
        return owned

    def _abandon_prefetch(self) -> list[JobRecord]:
        """On the way out: the batch claimed ahead, to give back (``[]`` if none came)."""
        try:
            collected = self._collect_prefetch()
        except Exception:  # stopping anyway: what it claimed comes back after the lease
            self.logger.warning("the batch claimed ahead could not be read", exc_info=True)
            return []
        return collected[0].records() if collected else []

    def _log_successes(self, done: list[Acked], results: list[bool]) -> None:
        for (record, elapsed, logger), applied in zip(done, results, strict=True):
            if self._applied(applied, record):
                self.summary.succeeded += 1
                if logger.isEnabledFor(logging.INFO):
                    logger.info(
                        "succeeded %s id=%s in %s", record.name, record.id, _duration(elapsed)
                    )

    def _record_error(
        self,
        record: JobRecord,
        exc: Exception,
        max_attempts: int,
        elapsed: float,
        logger: logging.Logger,
    ) -> None:
        error = format_error(exc)
        summary = error.split("\n", 1)[0]
        if record.attempts >= max_attempts:
            self._finish_failed(record, error, log_as="failed for good", elapsed=elapsed)
            return
        delay = backoff_delay(record.attempts)
        token = record.lock_token or ""
        if self._ack(
            lambda: self.adapter.reschedule(record.id, token, delay=delay, error=error), record
        ):
            self.summary.retried += 1
            logger.warning(
                "raised %s id=%s attempt %d/%d after %s: %s; next attempt in %s",
                record.name,
                record.id,
                record.attempts,
                max_attempts,
                _duration(elapsed),
                summary,
                _duration(delay),
            )

    def _finish_failed(
        self, record: JobRecord, error: str, *, log_as: str, elapsed: float | None = None
    ) -> None:
        token = record.lock_token or ""
        keep = not self.settings.delete_failed_jobs
        if self._ack(lambda: self.adapter.fail(record.id, token, error=error, keep=keep), record):
            self.summary.failed += 1
            self.summary.failed_ids.append(record.id)
            took = "" if elapsed is None else f" after {_duration(elapsed)}"
            self.logger.error(
                "%s %s id=%s attempt %d%s: %s",
                log_as,
                record.name,
                record.id,
                record.attempts,
                took,
                error.split("\n", 1)[0],
            )

    # -- store calls ------------------------------------------------------------------------

    def _claim(self) -> list[JobRecord]:
        if self._pending:
            # Jobs that came with a wake-up start at once: an idle queue has nothing to claim
            # ahead, and sending the round trip first would only delay them.
            jobs, self._pending = self._pending, []
            return jobs
        jobs = self._prefetched() or self._claim_now()
        if jobs:
            self._start_prefetch()  # no-op when _prefetched already sent the next one
        return jobs

    def _claim_now(self) -> list[JobRecord]:
        if self._succeeded:  # deferred acknowledgements: send them with this claim
            try:
                return self._flush_successes(claim=True)
            except StorageUnavailable as exc:  # only when stopping: see _store_call
                self._store_down(exc)
                return []
        try:
            jobs = self.adapter.claim(
                self.worker_id,
                self.settings.queues,
                limit=self.settings.batch_size,
                lease=self._lease,
            )
        except StorageUnavailable as exc:
            self._store_down(exc)
            return []
        self._store_back()
        return jobs

    def _ack(self, write: Callable[[], bool], record: JobRecord) -> bool:
        """Apply a worker-owned write, retrying while the store is unreachable.

        ``False`` when the lock had been taken over: the new owner's state is left alone.
        """
        try:
            applied = self._store_call(write)
        finally:
            self._heartbeat.drop(record.id)
        return self._applied(applied, record)

    def _store_call(self, write: Callable[[], T]) -> T:
        tries = 0
        while True:
            tries += 1
            try:
                result = write()
            except StorageUnavailable as exc:
                # Stopping with the store down: stop trying after a few rounds. The lock
                # then expires and the job runs again (at least once, never lost).
                if self.stop.cold.is_set() or (self.stop.stopping and tries >= 3):
                    raise
                self._store_down(exc)
                continue
            self._store_back()
            return result

    def _applied(self, applied: bool, record: JobRecord) -> bool:
        if not applied:
            self.summary.lock_lost += 1
            self.logger.warning(
                "job %s (%s): the lock was lost (expired and taken by another worker, or the "
                "job was deleted); this worker's outcome was not recorded",
                record.id,
                record.name,
            )
        return applied

    def _release(self, records: Sequence[JobRecord]) -> None:
        for record in records:
            try:
                if self.adapter.release(record.id, record.lock_token or ""):
                    self.summary.released += 1
            except StorageUnavailable as exc:
                self.logger.warning("could not give back job %s: %s", record.id, exc)
            finally:
                self._heartbeat.drop(record.id)

    def _store_down(self, exc: StorageUnavailable) -> None:
        """Back off (exponentially, with jitter) while the store is unreachable."""
        now = time.monotonic()
        if self._unavailable_since is None:
            self._unavailable_since = now
            self.logger.error("the store is unreachable, retrying: %s", exc)
        self._reconnect_attempts += 1
        delay = min(_RECONNECT_MAX_DELAY, 0.1 * 2 ** min(self._reconnect_attempts, 10))
        self.stop.wait(delay * random.uniform(0.5, 1.0))

    def _store_back(self) -> None:
        if self._unavailable_since is not None:
            self.logger.warning(
                "the store is reachable again after %s",
                _duration(time.monotonic() - self._unavailable_since),
            )
        self._unavailable_since = None
        self._reconnect_attempts = 0

    def _schedule_recurring(self) -> int:
        try:
            return self._recurring.run_due()
        except StorageUnavailable as exc:
            self._store_down(exc)
            return 0

    def _wait_for_work(self) -> None:
        deadline = time.monotonic() + self.settings.sleep_delay
        while not self.stop.stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self._schedule_recurring():
                return  # a recurring run was just stored
            chunk = min(remaining, _IDLE_CHUNK, self._recurring.seconds_until_check())
            started = time.monotonic()
            try:
                if self._wait_and_claim is not None and self.settings.queues:
                    self._pending = self._wait_and_claim(
                        self.worker_id,
                        self.settings.queues[0],
                        limit=self.settings.batch_size,
                        lease=self._lease,
                        timeout=chunk,
                    )
                    if self._pending:
                        return
                    continue  # nothing came: the claim already looked, so wait again
                self.adapter.wait_for_work(self.settings.queues, chunk)
            except StorageUnavailable as exc:
                self._store_down(exc)
                return
            if time.monotonic() - started < chunk * 0.9:
                return  # woken early: work may be there


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    return f"{seconds / 60:.1f}min"
