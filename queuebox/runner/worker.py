"""The worker: claim due jobs, run them, record each outcome.

Policy lives here, once, for every store: on success the job is deleted (or kept); when
``perform`` raises, the job runs again after ``attempts ** 4`` seconds until ``max_attempts``,
then it is failed; a record that cannot be run (unreadable, undecodable, an unknown job
name) is failed at once and the worker goes on. Where jobs come from and how successes are
acknowledged is the claim source's business (``queuebox.runner.claims``).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from queuebox import config, registry
from queuebox.backends.base import WORKER_LOST, Adapter, JobRecord
from queuebox.errors import PayloadError, StorageUnavailable, UnknownJob
from queuebox.hooks import run_with_hooks
from queuebox.job import Job
from queuebox.payload import decode_handler
from queuebox.runner.claims import ClaimSource, Success, claim_source_for
from queuebox.runner.heartbeat import Heartbeat
from queuebox.runner.outcomes import MAX_ERROR_CHARS, WorkSummary, backoff_delay, format_error
from queuebox.runner.recurring import RecurringScheduler
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import ColdStop, StopFlag

__all__ = [
    "MAX_ERROR_CHARS",
    "WorkSummary",
    "Worker",
    "backoff_delay",
    "default_worker_id",
    "format_error",
]

_IDLE_CHUNK = 1.0  # the longest a stop request waits for an idle worker to notice it
_RECONNECT_MAX_DELAY = 30.0
_STOPPING_TRIES = 3  # store calls tried while stopping with the store down
#: How long ``work_off`` retries an unreachable store before it gives up.
WORK_OFF_GIVE_UP_AFTER = 60.0
_HOOK_METHODS = ("before_perform", "after_perform", "after_success", "after_failure")

T = TypeVar("T")


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
        self.lease = min(self.settings.lease, self.settings.max_runtime)
        self.claims: ClaimSource = claim_source_for(
            adapter, self.settings, worker_id=self.worker_id, lease=self.lease
        )
        self._heartbeat = Heartbeat(
            adapter, lease=self.lease, max_runtime=self.settings.max_runtime, logger=self.logger
        )
        self._recurring = RecurringScheduler(adapter, self.settings.queues, self.logger)
        self._done: list[Success] = []  # successes not yet handed to the claim source
        self._woken: list[JobRecord] = []  # jobs that came with the last wake-up
        self._global_hooks = True  # read again for every batch
        self._has_own_hooks: dict[type[Job], bool] = {}
        self._unavailable_since: float | None = None
        self._reconnect_attempts = 0

    # -- loops ------------------------------------------------------------------------------

    def run(self) -> WorkSummary:
        """Work until a stop is requested."""
        try:
            while not self.stop.stopping:
                self._schedule_recurring()
                if self._run_batch(self._claim()) == 0 and not self.stop.stopping:
                    if self._on_idle is not None:
                        self._on_idle()
                    self._wait_for_work()
        finally:
            self._finish()
        return self.summary

    def work_off(
        self,
        progress: Callable[[WorkSummary], None] | None = None,
        *,
        give_up_after: float = WORK_OFF_GIVE_UP_AFTER,
    ) -> WorkSummary:
        """Run every job that is due now, then return (jobs retried later are left).

        An unreachable store is retried, with backoff, for up to ``give_up_after`` seconds
        at a time; then ``StorageUnavailable`` is raised (``self.summary`` says what ran).
        """
        try:
            while not self.stop.stopping:
                if self._run_batch(self._claim(give_up_after=give_up_after)) == 0:
                    break
                if progress is not None:
                    progress(self.summary)
        finally:
            self._finish()
        return self.summary

    def run_once(self) -> int:
        """Claim one batch, run it and record its outcomes; return how many jobs it held."""
        count = self._run_batch(self._claim(ahead=False))
        self._flush()
        return count

    def _run_batch(self, jobs: Sequence[JobRecord]) -> int:
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
            succeeded = {success.record.id for success in self._done}
            self._release(
                [r for r in jobs if self._heartbeat.holds(r.id) and r.id not in succeeded]
            )
        return len(jobs)

    # -- one job ----------------------------------------------------------------------------

    def _run_job(self, record: JobRecord) -> None:
        if record.unreadable is not None:
            self._finish_failed(record, record.last_error or record.unreadable, "unreadable")
            return
        try:
            call = decode_handler(record.handler)
            job_class = registry.get(call.name)
        except (PayloadError, UnknownJob) as exc:
            self._finish_failed(record, f"{type(exc).__name__}: {exc}", "unrunnable")
            return
        max_attempts = job_class.max_attempts or self.settings.max_attempts
        if record.last_error is not None and record.last_error.startswith(WORKER_LOST):
            self.logger.warning(
                "reclaimed %s id=%s (attempt %d): %s",
                record.name,
                record.id,
                record.attempts,
                record.last_error,
            )
        if record.attempts > max_attempts:
            # Only a reclaim pushes attempts past the limit: the worker that held the job
            # died (or stalled) on its last allowed attempt.
            reason = (record.last_error or WORKER_LOST).split("\n", 1)[0]
            self._finish_failed(record, f"{reason}; out of attempts ({max_attempts})", "failed")
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
        self.stop.job_running = True
        try:
            instance = job_class()
            instance.record = record
            instance.will_retry = record.attempts < max_attempts
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
        # Successes are acknowledged with the next claim (one round trip for a batch); until
        # then the heartbeat keeps their locks. A crash before that runs them again, which
        # at-least-once allows.
        self._done.append(Success(record, time.perf_counter() - started, logger))

    def _own_hooks(self, job_class: type[Job]) -> bool:
        """Whether ``job_class`` overrides one of ``Job``'s (empty) lifecycle hooks."""
        found = self._has_own_hooks.get(job_class)
        if found is None:
            found = self._has_own_hooks[job_class] = any(
                getattr(job_class, hook) is not getattr(Job, hook) for hook in _HOOK_METHODS
            )
        return found

    def _record_error(
        self,
        record: JobRecord,
        exc: Exception,
        max_attempts: int,
        elapsed: float,
        logger: logging.Logger,
    ) -> None:
        error = format_error(exc)
        if record.attempts >= max_attempts:
            self._finish_failed(record, error, "failed for good", elapsed=elapsed)
            return
        delay = backoff_delay(record.attempts)
        token = record.lock_token or ""
        if self._write(
            lambda: self.adapter.reschedule(record.id, token, delay=delay, error=error), record
        ):
            self.summary.retried += 1
            self.summary.retried_ids.add(record.id)
            logger.warning(
                "raised %s id=%s attempt %d/%d after %s: %s; next attempt in %s",
                record.name,
                record.id,
                record.attempts,
                max_attempts,
                _duration(elapsed),
                error.split("\n", 1)[0],
                _duration(delay),
            )

    def _finish_failed(
        self, record: JobRecord, error: str, log_as: str, *, elapsed: float | None = None
    ) -> None:
        token = record.lock_token or ""
        keep = not self.settings.delete_failed_jobs
        if self._write(lambda: self.adapter.fail(record.id, token, error=error, keep=keep), record):
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

    def _claim(self, *, ahead: bool = True, give_up_after: float | None = None) -> list[JobRecord]:
        """The next jobs: those that came with a wake-up, else a claim that carries the
        successes so far. Retries an unreachable store (with backoff) until a stop, or for
        ``give_up_after`` seconds (then raises)."""
        if self._woken:
            # Jobs that came with a wake-up start at once: an idle queue has nothing to claim
            # ahead, and sending a round trip first would only delay them.
            jobs, self._woken = self._woken, []
            return jobs
        while True:
            done, self._done = self._done, []
            try:
                claimed = self.claims.next_batch(done, self.settings.batch_size, ahead=ahead)
            except StorageUnavailable as exc:
                self._store_down(exc, give_up_after)
                if self.stop.stopping:
                    return []
                continue
            except Exception as exc:  # a store's bug must not stop the worker
                self._store_bug(exc, give_up_after)
                if self.stop.stopping:
                    return []
                continue
            self._store_back()
            self._log_acks(claimed.acked)
            for record in claimed.lost:
                self._applied(False, record)
            return claimed.jobs

    def _flush(self) -> None:
        """Acknowledge what succeeded and give back what was claimed ahead."""
        done, self._done = self._done, []
        for attempt in range(1, _STOPPING_TRIES + 1):
            try:
                flushed = self.claims.flush(done if attempt == 1 else ())
            except StorageUnavailable as exc:
                if self.stop.cold.is_set() or attempt == _STOPPING_TRIES:
                    self.logger.warning(
                        "could not record %d success(es) before stopping (%s); their locks "
                        "lapse and they run again",
                        self.claims.pending,
                        exc,
                    )
                    return
                self._store_down(exc, None)
                continue
            self._log_acks(flushed.acked)
            self._release(flushed.jobs)
            return

    def _finish(self) -> None:
        try:
            self._flush()
            woken, self._woken = self._woken, []
            self._release(woken)  # came with the last wake-up, then a stop
        finally:
            self._heartbeat.stop()

    def _log_acks(self, acked: Sequence[tuple[Success, bool]]) -> None:
        for success, applied in acked:
            self._heartbeat.drop(success.record.id)
            if self._applied(applied, success.record):
                self.summary.succeeded += 1
                if success.logger.isEnabledFor(logging.INFO):
                    success.logger.info(
                        "succeeded %s id=%s in %s",
                        success.record.name,
                        success.record.id,
                        _duration(success.elapsed),
                    )

    def _write(self, write: Callable[[], bool], record: JobRecord) -> bool:
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
                if self.stop.cold.is_set() or (self.stop.stopping and tries >= _STOPPING_TRIES):
                    raise
                self._store_down(exc, None)
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

    def _store_down(self, exc: StorageUnavailable, give_up_after: float | None) -> None:
        """Back off (exponentially, with jitter) while the store is unreachable; raise
        ``exc`` once it has been unreachable for ``give_up_after`` seconds."""
        now = time.monotonic()
        if self._unavailable_since is None:
            self._unavailable_since = now
            self.logger.error("the store is unreachable, retrying: %s", exc)
        elif give_up_after is not None and now - self._unavailable_since >= give_up_after:
            down_for = _duration(now - self._unavailable_since)
            self.logger.error("giving up: the store has been unreachable for %s: %s", down_for, exc)
            raise exc
        self._reconnect_attempts += 1
        delay = min(_RECONNECT_MAX_DELAY, 0.1 * 2 ** min(self._reconnect_attempts, 10))
        self.stop.wait(delay * random.uniform(0.5, 1.0))

    def _store_bug(self, exc: Exception, give_up_after: float | None) -> None:
        """A store call raised something other than StorageUnavailable: a bug in the store
        or a record it choked on. Log it whole and back off as for an outage."""
        self.logger.exception("the store's claim raised %s; retrying", type(exc).__name__)
        self._store_down(StorageUnavailable(f"{type(exc).__name__}: {exc}"), give_up_after)

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
            self._store_down(exc, None)
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
                self._woken = self.claims.wait(chunk, self.settings.batch_size)
            except StorageUnavailable as exc:
                self._store_down(exc, None)
                return
            if self._woken or time.monotonic() - started < chunk * 0.9:
                return  # jobs came, or woken early: work may be there


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    return f"{seconds / 60:.1f}min"
