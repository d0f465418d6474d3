"""Recurring jobs: running workers store each tick of a ``cron`` or ``every`` job once.

Every worker that serves a recurring job's queue checks, about once a second, whether the
job has reached a new tick, and asks the store to record that tick and store the run in one
atomic step (``RecurringStore.schedule_tick``): however many workers and machines try, one
stores it.

* Catch-up: after an outage, the ticks missed collapse into one run, stored as soon as a
  worker is back, with ``run_at`` the latest missed tick.
* Overlap: a run is stored under the unique key ``recurring:<name>``, so a tick that comes
  while the previous run still waits or runs is skipped (logged), never piled up.
* A recurring job seen for the first time starts at its next tick: deploying a daily job at
  10:00 does not run that day's 03:00 run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from queuebox import config, registry
from queuebox.backends.base import Adapter, NewJob, RecurringStore
from queuebox.job import flow_limits
from queuebox.payload import encode_handler

if TYPE_CHECKING:
    from croniter import croniter

    from queuebox.job import Job
else:
    try:
        from croniter import croniter
    except ImportError:  # only cron jobs need it, and they check at definition
        croniter = None

__all__ = [
    "RecurringScheduler",
    "RecurringStatus",
    "describe",
    "latest_tick",
    "next_tick",
    "unique_key_for",
]

#: The longest a worker goes without checking; it also checks at each job's next tick.
CHECK_INTERVAL = 1.0


@dataclass(frozen=True)
class RecurringStatus:
    name: str
    queue: str
    schedule: str
    last_tick: datetime | None
    next_run: datetime


def describe(adapter: Adapter) -> list[RecurringStatus]:
    """The registered recurring jobs, with the last tick the store recorded and the next."""
    jobs = registry.recurring()
    if not jobs:
        return []
    ticks = adapter.recurring_ticks() if isinstance(adapter, RecurringStore) else {}
    now = adapter.now()
    rows = []
    for job_class in jobs:
        last = ticks.get(job_class.name)
        schedule = (
            f"every {_seconds(job_class.every):g}s"
            if job_class.every is not None
            else f"{job_class.cron} ({job_class.timezone})"
        )
        rows.append(
            RecurringStatus(
                name=job_class.name,
                queue=job_class.queue,
                schedule=schedule,
                last_tick=last,
                # After an outage the missed ticks collapse into one run, due at once.
                next_run=next_tick(job_class, last)
                if last is not None
                else next_tick(job_class, now),
            )
        )
    return rows


def unique_key_for(job_class: type[Job]) -> str:
    return f"recurring:{job_class.name}"


def latest_tick(job_class: type[Job], now: datetime) -> datetime:
    """The last tick of ``job_class`` at or before ``now`` (aware UTC)."""
    if job_class.every is not None:
        period = _seconds(job_class.every)
        return datetime.fromtimestamp(math.floor(now.timestamp() / period) * period, UTC)
    tick: datetime = _cron(job_class, now).get_prev(datetime)
    return tick.astimezone(UTC)


def next_tick(job_class: type[Job], after: datetime) -> datetime:
    """The first tick of ``job_class`` strictly after ``after`` (aware UTC)."""
    if job_class.every is not None:
        period = _seconds(job_class.every)
        return datetime.fromtimestamp((math.floor(after.timestamp() / period) + 1) * period, UTC)
    tick: datetime = _cron(job_class, after).get_next(datetime)
    return tick.astimezone(UTC)


def _cron(job_class: type[Job], moment: datetime) -> croniter:
    # Only called for jobs without `every`, which Job validated to have a cron string.
    return croniter(job_class.cron or "", moment.astimezone(ZoneInfo(job_class.timezone)))


def _seconds(every: float | timedelta) -> float:
    return every.total_seconds() if isinstance(every, timedelta) else float(every)


class RecurringScheduler:
    """Stores due ticks of the recurring jobs whose queue a worker serves."""

    def __init__(
        self, adapter: Adapter, queues: Sequence[str] | None, logger: logging.Logger
    ) -> None:
        self.adapter = adapter
        self.logger = logger
        self.jobs = [
            job_class
            for job_class in registry.recurring()
            if queues is None or job_class.queue in queues
        ]
        self._known: dict[str, datetime] | None = None
        self._next_check = 0.0
        self.store = adapter if isinstance(adapter, RecurringStore) else None
        if self.jobs and self.store is None:
            self.logger.error(
                "the %s store cannot run recurring jobs; %s will not be scheduled",
                type(adapter).__name__,
                ", ".join(job.name for job in self.jobs),
            )
            self.jobs = []

    def run_due(self) -> int:
        """Store the runs that are due now; return how many were stored."""
        store = self.store
        if store is None or not self.jobs or time.monotonic() < self._next_check:
            return 0
        if self._known is None:
            self._known = store.recurring_ticks()
        now = self.adapter.now()
        soonest = min(next_tick(job_class, now) for job_class in self.jobs)
        wait = min(CHECK_INTERVAL, (soonest - now).total_seconds())
        self._next_check = time.monotonic() + max(wait, 0.001)
        stored = 0
        for job_class in self.jobs:
            tick = latest_tick(job_class, now)
            known = self._known.get(job_class.name)
            if known is not None and tick <= known:
                continue
            self._known[job_class.name] = tick
            job = self._new_run(job_class, tick)
            # First sight (no tick recorded yet): record the tick, run from the next one.
            record = store.schedule_tick(job_class.name, tick, job, store=known is not None)
            if record is not None:
                stored += 1
                self.logger.info(
                    "scheduled %s for its tick at %s (job %s)",
                    job_class.name,
                    tick.isoformat(),
                    record.id,
                )
            elif known is not None:
                self.logger.debug(
                    "tick %s of %s: stored by another worker, or skipped because the "
                    "previous run is still waiting or running",
                    tick.isoformat(),
                    job_class.name,
                )
        return stored

    def seconds_until_check(self) -> float:
        """How long an idle worker may sleep before ``run_due`` has work to look at."""
        if not self.jobs:
            return float("inf")
        return max(0.0, self._next_check - time.monotonic())

    def _new_run(self, job_class: type[Job], tick: datetime) -> NewJob:
        handler = encode_handler(
            job_class.name, (), {}, max_bytes=config.get_settings().max_payload_bytes
        )
        return NewJob(
            name=job_class.name,
            handler=handler,
            queue=job_class.queue,
            priority=job_class.priority,
            run_at=tick,
            unique_key=unique_key_for(job_class),
            **flow_limits(job_class, (), {}),
        )
