"""Lifecycle hooks, unique jobs and recurring jobs, on the in-memory and SQLite stores."""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import queuebox
from queuebox import Job, JobState, config
from queuebox.backends.memory import MemoryAdapter
from queuebox.backends.sqlite import SQLiteAdapter
from queuebox.errors import ConfigurationError
from queuebox.runner.recurring import RecurringScheduler, latest_tick, next_tick
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import StopFlag
from queuebox.runner.worker import Worker

events: list[Any] = []


@pytest.fixture(autouse=True)
def _clear_events() -> None:
    events.clear()


class Hooked(Job):
    def before_perform(self) -> None:
        events.append(("job before", self.args, self.kwargs))

    def perform(self, value: int, *, fail: bool = False) -> int:
        events.append("perform")
        if fail:
            raise ValueError("failed on purpose")
        return value * 2

    def after_perform(self) -> None:
        events.append("job after_perform")

    def after_success(self) -> None:
        events.append("job after_success")

    def after_failure(self, error: BaseException) -> None:
        events.append(("job after_failure", str(error), self.will_retry))


def add_global_hooks() -> None:
    queuebox.add_hook("before_perform", lambda job: events.append(("global before", job.name)))
    queuebox.add_hook("after_perform", lambda job: events.append("global after_perform"))
    queuebox.add_hook("after_success", lambda job: events.append("global after_success"))
    queuebox.add_hook(
        "after_failure", lambda job, error: events.append(("global after_failure", type(error)))
    )


# -- hooks ------------------------------------------------------------------------------------


def test_hooks_run_in_order_on_success(memory_store: MemoryAdapter) -> None:
    add_global_hooks()
    Hooked.perform_later(21)
    Worker(memory_store).work_off()
    assert events == [
        ("global before", "Hooked"),
        ("job before", [21], {}),
        "perform",
        "job after_perform",
        "global after_perform",
        "job after_success",
        "global after_success",
    ]


def test_hooks_run_in_order_on_failure(memory_store: MemoryAdapter) -> None:
    add_global_hooks()
    Hooked.perform_later(1, fail=True)
    Worker(memory_store, WorkerSettings(max_attempts=2)).work_off()
    assert events == [
        ("global before", "Hooked"),
        ("job before", [1], {"fail": True}),
        "perform",
        "job after_perform",
        "global after_perform",
        ("job after_failure", "failed on purpose", True),
        ("global after_failure", ValueError),
    ]


def test_after_failure_knows_the_last_attempt(memory_store: MemoryAdapter) -> None:
    Hooked.perform_later(1, fail=True)
    Worker(memory_store, WorkerSettings(max_attempts=1)).work_off()
    assert ("job after_failure", "failed on purpose", False) in events


def test_a_raising_before_perform_fails_the_attempt(memory_store: MemoryAdapter) -> None:
    class Guarded(Job):
        def before_perform(self) -> None:
            raise PermissionError("not today")

        def perform(self) -> None:
            events.append("perform")

    record = Guarded.perform_later()
    summary = Worker(memory_store).work_off()
    stored = memory_store.get(record.id)
    assert events == [] and summary.retried == 1
    assert stored is not None and stored.last_error is not None
    assert stored.last_error.startswith("PermissionError: not today")


def test_a_raising_after_hook_is_logged_and_changes_nothing(
    memory_store: MemoryAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    class Noisy(Job):
        def perform(self) -> None:
            events.append("perform")

        def after_success(self) -> None:
            raise RuntimeError("metrics down")

    queuebox.add_hook("after_perform", lambda job: 1 / 0)
    record = Noisy.perform_later()
    with caplog.at_level(logging.ERROR, logger="queuebox"):
        summary = Worker(memory_store, logger=logging.getLogger("queuebox.worker")).work_off()
    assert summary.succeeded == 1 and memory_store.get(record.id) is None
    assert "after_success hook of Noisy raised" in caplog.text
    assert "after_perform hook of Noisy raised" in caplog.text


def test_perform_now_runs_the_hooks() -> None:
    add_global_hooks()
    assert Hooked.perform_now(4) == 8
    assert events[0] == ("global before", "Hooked") and events[-1] == "global after_success"
    events.clear()
    with pytest.raises(ValueError, match="failed on purpose"):
        Hooked.perform_now(4, fail=True)
    assert ("job after_failure", "failed on purpose", False) in events


def test_add_hook_rejects_bad_input() -> None:
    with pytest.raises(ConfigurationError, match="unknown hook event 'before_run'"):
        queuebox.add_hook("before_run", print)
    with pytest.raises(ConfigurationError, match="not callable"):
        queuebox.add_hook("after_success", "print")  # type: ignore[arg-type]


# -- unique jobs ------------------------------------------------------------------------------


class Digest(Job):
    unique = True

    def perform(self, user_id: int) -> None:
        events.append(user_id)


class PerUser(Job):
    @classmethod
    def unique_key(cls, *args: Any, **kwargs: Any) -> str | None:
        return f"user:{args[0]}"

    def perform(self, user_id: int, note: str = "") -> None:
        events.append((user_id, note))


@pytest.fixture(params=["memory", "sqlite"])
def any_store(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    adapter = MemoryAdapter() if request.param == "memory" else SQLiteAdapter(tmp_path / "u.db")
    config.configure(adapter=adapter)
    yield adapter
    adapter.close()


def test_unique_job_returns_the_waiting_one(any_store: Any) -> None:
    first = Digest.perform_later(7)
    assert Digest.perform_later(7).id == first.id
    assert Digest.perform_later(8).id != first.id
    assert first.unique_key is not None and first.unique_key.startswith("Digest:")
    Worker(any_store).work_off()
    assert sorted(events) == [7, 8]
    assert Digest.perform_later(7).id != first.id, "the key was not freed on success"


def test_custom_unique_key(any_store: Any) -> None:
    first = PerUser.perform_later(1, "a")
    assert PerUser.perform_later(1, "b").id == first.id
    assert PerUser.perform_later(2, "b").id != first.id


def test_unique_key_freed_on_failure(any_store: Any) -> None:
    class Fragile(Job):
        unique = True

        def perform(self) -> None:
            raise RuntimeError("no")

    first = Fragile.perform_later()
    Worker(any_store, WorkerSettings(max_attempts=1)).work_off()
    failed = any_store.get(first.id)
    assert failed is not None and failed.state is JobState.FAILED
    assert Fragile.perform_later().id != first.id


def test_unique_key_must_be_a_string(memory_store: MemoryAdapter) -> None:
    class BadKey(Job):
        @classmethod
        def unique_key(cls, *args: Any, **kwargs: Any) -> str | None:
            return ""

        def perform(self) -> None: ...

    with pytest.raises(ConfigurationError, match="non-empty string"):
        BadKey.perform_later()
    assert memory_store.counts() == []


# -- recurring jobs ---------------------------------------------------------------------------


def test_cron_ticks_in_a_time_zone() -> None:
    class Morning(Job):
        cron = "0 9 * * *"
        timezone = "Europe/Paris"

        def perform(self) -> None: ...

    now = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)  # 13:00 in Paris (UTC+1 in winter)
    assert latest_tick(Morning, now) == datetime(2027, 1, 15, 8, 0, tzinfo=UTC)
    assert next_tick(Morning, now) == datetime(2027, 1, 16, 8, 0, tzinfo=UTC)
    summer = datetime(2027, 7, 15, 12, 0, tzinfo=UTC)
    assert latest_tick(Morning, summer) == datetime(2027, 7, 15, 7, 0, tzinfo=UTC)


def test_interval_ticks_are_aligned() -> None:
    class Every15(Job):
        every = timedelta(minutes=15)

        def perform(self) -> None: ...

    now = datetime(2027, 1, 1, 10, 7, 30, tzinfo=UTC)
    assert latest_tick(Every15, now) == datetime(2027, 1, 1, 10, 0, tzinfo=UTC)
    assert next_tick(Every15, now) == datetime(2027, 1, 1, 10, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"cron": "every day"}, "not a valid cron expression"),
        ({"cron": "* * * *"}, "not a valid cron expression"),
        ({"every": 0}, "must be seconds above 0"),
        # These said "wait=-5 is not valid", naming neither the class nor every=.
        ({"every": -5}, "job class BadSchedule: every=-5 is not valid"),
        ({"every": "5"}, "job class BadSchedule: every='5' is not valid"),
        ({"every": 1e300}, "job class BadSchedule: every=1e+300 is not valid"),
        ({"cron": "* * * * *", "every": 5}, "not both"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "not a known time zone"),
    ],
)
def test_bad_recurring_schedules(attributes: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(expected)):
        type("BadSchedule", (Job,), {**attributes, "perform": lambda self: None})


def test_recurring_perform_takes_no_arguments() -> None:
    with pytest.raises(ConfigurationError, match="takes no arguments"):

        class NeedsArgs(Job):
            every = 60

            def perform(self, user_id: int) -> None: ...


def _recurring_job(period: float) -> type[Job]:
    class Ticker(Job):
        every = period

        def perform(self) -> None:
            assert self.record is not None
            events.append(self.record.run_at)

    return Ticker


def test_first_sight_waits_for_the_next_tick_then_each_tick_runs_once(
    any_store: Any,
) -> None:
    ticker = _recurring_job(0.4)
    schedulers = [RecurringScheduler(any_store, None, logging.getLogger("t")) for _ in range(3)]
    assert [s.run_due() for s in schedulers] == [0, 0, 0], "ran a tick from before it existed"
    stored = 0
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        for scheduler in schedulers:
            scheduler._next_check = 0  # check on every pass instead of once a second
            stored += scheduler.run_due()
        Worker(any_store).work_off()
        time.sleep(0.05)
    ticks = sorted(events)
    assert stored == len(ticks) >= 3
    assert len(set(ticks)) == len(ticks), "a tick ran twice"
    gaps = {round((b - a).total_seconds(), 1) for a, b in itertools.pairwise(ticks)}
    assert gaps == {0.4}, f"a tick was skipped: {ticks}"
    assert ticker.name in any_store.recurring_ticks()


def test_missed_ticks_collapse_into_one_run(any_store: Any) -> None:
    _recurring_job(0.2)
    scheduler = RecurringScheduler(any_store, None, logging.getLogger("t"))
    scheduler.run_due()  # first sight: records the current tick
    time.sleep(0.9)  # an "outage" of four ticks
    scheduler._next_check = 0
    assert scheduler.run_due() == 1
    assert sum(c.total for c in any_store.counts()) == 1


def test_a_slow_run_is_not_piled_up(any_store: Any) -> None:
    _recurring_job(0.2)
    scheduler = RecurringScheduler(any_store, None, logging.getLogger("t"))
    scheduler.run_due()
    stored = 0
    for _ in range(6):  # nothing works the queue: the first run stays waiting
        time.sleep(0.25)
        scheduler._next_check = 0
        stored += scheduler.run_due()
    assert stored == 1
    assert sum(c.total for c in any_store.counts()) == 1


def test_a_running_worker_schedules_recurring_jobs(memory_store: MemoryAdapter) -> None:
    _recurring_job(0.5)
    stop = StopFlag()
    worker = Worker(memory_store, WorkerSettings(sleep_delay=0.2), stop=stop)
    thread = threading.Thread(target=worker.run)
    thread.start()
    time.sleep(3.2)
    stop.request()
    thread.join(5)
    assert len(events) >= 3, f"only {len(events)} ticks ran in 3 s"
    assert len(set(events)) == len(events)


def test_recurring_jobs_only_on_workers_of_their_queue(memory_store: MemoryAdapter) -> None:
    class Elsewhere(Job):
        queue = "reports"
        every = 60

        def perform(self) -> None: ...

    assert RecurringScheduler(memory_store, ["email"], logging.getLogger("t")).jobs == []
    assert RecurringScheduler(memory_store, ["reports"], logging.getLogger("t")).jobs == [Elsewhere]
