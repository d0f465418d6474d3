"""The worker: claim due jobs, run them, record each outcome.

Policy lives here, once, for every store: on success the job is deleted (or kept); when
``perform`` raises (or overruns its ``max_runtime``), the job runs again after
``attempts ** 4`` seconds until ``max_attempts``, then it is failed; a cancelled run is kept
as cancelled; a record that cannot be run (unreadable, undecodable, an unknown job name) is
failed at once and the worker goes on.

With ``concurrency = 1`` (the default) jobs run one at a time in the worker's own thread,
as RedwoodJS runs them. With more, ``queuebox.runner.concurrent`` keeps that many in flight:
sync jobs on threads, async jobs as tasks of one event loop. Where jobs come from and how
successes are acknowledged is the claim source's business (``queuebox.runner.claims``);
the heartbeat (``queuebox.runner.heartbeat``) renews, cancels and times out held jobs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence

from queuebox.backends.base import WORKER_LOST, Adapter, JobRecord, WorkerRegistry
from queuebox.errors import StorageUnavailable
from queuebox.runner.beat import RegistryBeat
from queuebox.runner.claims import ClaimSource, Success, claim_source_for
from queuebox.runner.execution import Outcome, Prepared, global_hooks, prepare, run_async, run_sync
from queuebox.runner.heartbeat import Heartbeat
from queuebox.runner.outage import STOPPING_TRIES, StoreOutage
from queuebox.runner.outcomes import MAX_ERROR_CHARS, WorkSummary, backoff_delay, format_error
from queuebox.runner.recorder import Recorder
from queuebox.runner.recurring import RecurringScheduler
from queuebox.runner.runs import Held, HeldJobs, Phase, Reason
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import ColdStop, StopFlag
from queuebox.runner.stats import StatsCollector
from queuebox.runner.stuck import end_process

__all__ = [
    "EXIT_REPLACE_ME",
    "MAX_ERROR_CHARS",
    "WORK_OFF_GIVE_UP_AFTER",
    "WorkSummary",
    "Worker",
    "backoff_delay",
    "default_worker_id",
    "format_error",
]

_IDLE_CHUNK = 1.0  # the longest a stop request waits for an idle worker to notice it
#: How long ``work_off`` retries an unreachable store before it gives up.
WORK_OFF_GIVE_UP_AFTER = 60.0
#: The exit status of a worker process that ended itself because a job would not stop
#: (EX_TEMPFAIL): its parent (``work -n``, the supervisor) starts a fresh one.
EXIT_REPLACE_ME = 75


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Runs jobs from ``settings.queues`` until stopped (``run``) or out of due work
    (``work_off``). One worker per thread of control; it starts threads of its own (the
    heartbeat, and with ``concurrency`` above 1 its slots)."""

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
        self.on_idle = on_idle
        self.lease = self.settings.lease
        self.claims: ClaimSource = claim_source_for(
            adapter, self.settings, worker_id=self.worker_id, lease=self.lease
        )
        self.held = HeldJobs()
        self.stats = StatsCollector() if self.settings.record_stats else None
        self.beat = (
            RegistryBeat(
                adapter,
                adapter,
                self.settings,
                worker_id=self.worker_id,
                held=self.held,
                stats=self.stats,
            )
            if isinstance(adapter, WorkerRegistry)
            else None
        )
        self.heartbeat = Heartbeat(
            adapter,
            self.held,
            lease=self.lease,
            stop_grace=self.settings.stop_grace,
            logger=self.logger,
            on_stuck=self._stuck,
            on_beat=self.beat,
        )
        self.outage = StoreOutage(self.stop, self.logger)
        self.recurring = RecurringScheduler(adapter, self.settings.queues, self.logger)
        #: Set when a run would not stop: the process must end so that a fresh one takes
        #: over (``EXIT_REPLACE_ME``).
        self.stuck: Held | None = None
        #: Set by the concurrent loop, which handles a stuck run itself.
        self.on_stuck: Callable[[Held], None] | None = None
        self.recorder = Recorder(
            adapter,
            self.settings,
            held=self.held,
            summary=self.summary,
            outage=self.outage,
            stats=self.stats,
            stop=self.stop,
            logger=self.logger,
        )
        self._woken: list[JobRecord] = []  # jobs that came with the last wake-up
        self._loop: asyncio.AbstractEventLoop | None = None  # for async jobs, one at a time
        self._idle_spins = 0  # early wake-ups in a row that found nothing

    # -- loops ------------------------------------------------------------------------------

    def run(self) -> WorkSummary:
        """Work until a stop is requested."""
        if self.settings.concurrency > 1:
            from queuebox.runner.concurrent import ConcurrentLoop  # noqa: PLC0415 - a cycle

            return ConcurrentLoop(self).run(until_empty=False)
        self._started()
        try:
            while not self.stop.stopping:
                self.schedule_recurring()
                ran = self._run_batch(self.next_held(self.settings.batch_size))
                if ran == 0 and not self.stop.stopping:
                    if self.on_idle is not None:
                        self.on_idle()
                    self._woken = self.wait_for_work(self.settings.batch_size)
        finally:
            self.finish()
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
        if self.settings.concurrency > 1:
            from queuebox.runner.concurrent import ConcurrentLoop  # noqa: PLC0415 - a cycle

            return ConcurrentLoop(self).run(
                until_empty=True, progress=progress, give_up_after=give_up_after
            )
        self._started()
        try:
            while not self.stop.stopping:
                jobs = self.next_held(self.settings.batch_size, give_up_after=give_up_after)
                if self._run_batch(jobs) == 0:
                    break
                if progress is not None:
                    progress(self.summary)
        finally:
            self.finish()
        return self.summary

    def run_once(self) -> int:
        """Claim one batch, run it and record its outcomes; return how many jobs it held."""
        count = self._run_batch(self.next_held(self.settings.batch_size, ahead=False))
        self.flush()
        return count

    def _started(self) -> None:
        if self.beat is not None:
            self.heartbeat.start()  # the registry shows the worker before its first job

    def _run_batch(self, jobs: Sequence[Held]) -> int:
        hooks = global_hooks() if jobs else False
        try:
            for index, held in enumerate(jobs):
                if self.stop.stopping:
                    self.release([waiting.record for waiting in jobs[index:]])
                    break
                self._run_inline(held, hooks)
        except ColdStop:  # between two runs, or as one started
            self.stop.stop_now()
            self.release([held.record for held in self.held.all() if held.phase is not Phase.DONE])
        return len(jobs)

    def _run_inline(self, held: Held, hooks: bool) -> None:
        prepared = self.admit(held)
        if prepared is None:
            return
        self.log_start(prepared, held, slot=1)
        if prepared.job_class.is_async:
            loop = self._loop = self._loop or asyncio.new_event_loop()
            self.stop.interrupt = lambda: held.interrupt(Reason.COLD_STOP)
            try:
                outcome = loop.run_until_complete(run_async(held, prepared, 1, hooks=hooks))
            finally:
                self.stop.interrupt = None
        else:
            try:
                outcome = run_sync(held, prepared, 1, hooks=hooks, on_start=self._job_running)
            finally:
                self.stop.job_running = False
        self.record(outcome)

    def _job_running(self) -> None:
        self.stop.job_running = True  # a second stop signal now raises ColdStop in the job

    # -- one job: admission, start, outcome ---------------------------------------------------

    def admit(self, held: Held) -> Prepared | None:
        """The job ``held`` runs, or ``None`` when it must not run: unrunnable (failed at
        once), past its attempts (a reclaim), or cancelled before it started."""
        record = held.record
        prepared = prepare(record, self.settings.max_attempts, self.settings.max_runtime)
        if isinstance(prepared, str):
            self.recorder.failed(held, prepared, "unrunnable")
            return None
        if record.last_error is not None and record.last_error.startswith(WORKER_LOST):
            self.logger.warning(
                "reclaimed %s id=%s (attempt %d): %s",
                record.name,
                record.id,
                record.attempts,
                record.last_error,
            )
        if record.attempts > prepared.max_attempts:
            # Only a reclaim pushes attempts past the limit: the worker that held the job
            # died (or stalled) on its last allowed attempt.
            reason = (record.last_error or WORKER_LOST).split("\n", 1)[0]
            self.recorder.failed(
                held, f"{reason}; out of attempts ({prepared.max_attempts})", "failed"
            )
            return None
        if held.cancel_requested:
            self.recorder.cancelled(held, "JobCancelled: cancelled before it started")
            return None
        return prepared

    def job_started(self, held: Held) -> None:
        """Called as each run starts (for subclasses: status reports)."""

    def job_finished(self, outcome: Outcome) -> None:
        """Called once each run's outcome is recorded (for subclasses: limits, reports)."""

    def record(self, outcome: Outcome) -> None:
        """Write what one run's outcome means into the store (successes go with the next
        claim)."""
        self.recorder.record(outcome)
        self.job_finished(outcome)

    def take_done(self) -> list[Success]:
        return self.recorder.take_done()

    def release(self, records: Sequence[JobRecord]) -> None:
        self.recorder.release(records)

    def log_start(self, prepared: Prepared, held: Held, slot: int) -> None:
        logger, record = prepared.logger, held.record
        held.slot = slot
        self.job_started(held)
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "started %s id=%s queue=%s attempt %d/%d slot %d",
                record.name,
                record.id,
                record.queue,
                record.attempts,
                prepared.max_attempts,
                slot,
            )

    # -- store calls ------------------------------------------------------------------------

    def next_held(
        self, limit: int, *, ahead: bool = True, give_up_after: float | None = None
    ) -> list[Held]:
        """The next jobs, held: those that came with a wake-up, else a claim that carries
        the successes so far. Retries an unreachable store (with backoff) until a stop, or
        for ``give_up_after`` seconds (then raises)."""
        if self._woken:
            # Jobs that came with a wake-up start at once: an idle queue has nothing to claim
            # ahead, and sending a round trip first would only delay them.
            jobs, self._woken = self._woken, []
        else:
            jobs = self._claim(limit, ahead, give_up_after)
        if jobs:
            self._idle_spins = 0
            # Held locks need renewing from now on (not from the first run: a batch claimed
            # ahead waits); starting it once per batch keeps the call off each job's path.
            self.heartbeat.start()
        return self.held.hold_many(jobs)

    def _claim(self, limit: int, ahead: bool, give_up_after: float | None) -> list[JobRecord]:
        while True:
            try:
                claimed = self.claims.next_batch(self.take_done(), limit, ahead=ahead)
            except StorageUnavailable as exc:
                self.outage.down(exc, give_up_after)
            except Exception as exc:  # a store's bug must not stop the worker
                self.outage.bug(exc, "claim", give_up_after)
            else:
                self.outage.back()
                self.recorder.acknowledged(claimed.acked)
                for record in claimed.lost:
                    self.recorder.applied(False, record)
                return claimed.jobs
            if self.stop.stopping:
                return []

    def wait_for_work(self, limit: int) -> list[JobRecord]:
        """Idle: wait up to ``sleep_delay`` for work (less when recurring jobs fall due or a
        stop comes); jobs may come with the wake-up."""
        if self._idle_spins:
            # The last early wake-up found nothing to claim (held back by a limit, say):
            # back off a little each time, so that an idle worker never spins on the store.
            self.stop.wait(min(0.5, 0.005 * 2**self._idle_spins))
        deadline = time.monotonic() + self.settings.sleep_delay
        while not self.stop.stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.schedule_recurring():
                return []
            chunk = min(remaining, _IDLE_CHUNK, self.recurring.seconds_until_check())
            started = time.monotonic()
            try:
                jobs = self.claims.wait(chunk, limit)
            except StorageUnavailable as exc:
                self.outage.down(exc)
                return []
            if jobs or time.monotonic() - started < chunk * 0.9:
                self._idle_spins = 0 if jobs else min(self._idle_spins + 1, 7)
                return jobs  # jobs came, or woken early: work may be there
        return []

    def flush(self) -> None:
        """Acknowledge what succeeded and give back what was claimed ahead."""
        done = self.take_done()
        for attempt in range(1, STOPPING_TRIES + 1):
            try:
                flushed = self.claims.flush(done if attempt == 1 else ())
            except StorageUnavailable as exc:
                if self.stop.cold.is_set() or attempt == STOPPING_TRIES:
                    self.logger.warning(
                        "could not record %d success(es) before stopping (%s); their locks "
                        "lapse and they run again",
                        self.claims.pending,
                        exc,
                    )
                    return
                self.outage.down(exc)
                continue
            self.recorder.acknowledged(flushed.acked)
            self.release(flushed.jobs)
            return

    def finish(self) -> None:
        """On the way out: record what is pending, give back what never started."""
        try:
            self.flush()
            woken, self._woken = self._woken, []
            self.release(woken)  # came with the last wake-up, then a stop
            self.release([held.record for held in self.held.all() if held.phase is Phase.WAITING])
        finally:
            self.heartbeat.stop()
            self._leave_registry()
            if self._loop is not None:
                self._loop.close()

    def _leave_registry(self) -> None:
        if self.beat is None:
            return
        try:
            self.beat.retire()
        except StorageUnavailable as exc:
            self.logger.warning("could not remove this worker from the registry: %s", exc)

    def schedule_recurring(self) -> int:
        try:
            return self.recurring.run_due()
        except StorageUnavailable as exc:
            self.outage.down(exc)
            return 0

    # -- a run that would not stop -------------------------------------------------------------

    def _stuck(self, held: Held) -> None:
        """From the heartbeat: ``held`` was asked to stop ``stop_grace`` ago and still runs
        (blocked in C code, or swallowing the interruption). Only a new process can stop it,
        so this one records the outcome, gives back what it holds and ends itself; its parent
        starts a fresh one. The lock is held (renewed) until the outcome is written, so the
        run never overlaps another."""
        self.stuck = held
        self.logger.critical(
            "%s id=%s (slot %d) did not stop within %gs of being asked (%s); recording its "
            "outcome and ending this worker process (exit %d) so that a fresh one takes over",
            held.record.name,
            held.record.id,
            held.slot,
            self.settings.stop_grace,
            held.stop_reason.name.lower() if held.stop_reason else "stop",
            EXIT_REPLACE_ME,
        )
        if self.on_stuck is not None:  # the concurrent loop drains its other runs first
            self.on_stuck(held)
        else:  # the worker's thread runs the stuck job: only the heartbeat's thread can act
            self.stop.stop_now()
            end_process(self, held, EXIT_REPLACE_ME)
