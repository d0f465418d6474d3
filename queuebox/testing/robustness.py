"""What breaks a store in production although the plain contract passes: threads and forked
processes sharing one adapter, a session clock that is not UTC, the caller's clock used
where the store's belongs, case-insensitive queue names, an unordered listing, a lapsed
lock reported as something else, and driver errors leaking instead of
``StorageUnavailable``. Each test here failed on a real adapter that passed the rest.
"""

from __future__ import annotations

import contextlib
import random
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import pytest

from queuebox.backends.base import Adapter, JobState, NewJob
from queuebox.errors import StorageUnavailable
from queuebox.testing.support import (
    LEASE,
    SHORT_LEASE,
    StoreFixtures,
    close_to,
    fork,
    new_job,
    wait_all,
)

__all__ = ["RobustnessContract", "UnreachableFactory"]

#: Builds an adapter whose store cannot be reached (a server port nothing listens on, a
#: file whose folder is gone), or ``None`` for a store that lives inside the process.
UnreachableFactory = Callable[[], Adapter | None]

_SHIFT = timedelta(hours=5)


class RobustnessContract(StoreFixtures):
    """Provide ``unreachable_adapter_factory`` besides ``adapter_factory``."""

    @pytest.fixture
    def unreachable_adapter_factory(self) -> UnreachableFactory:
        raise NotImplementedError(
            "provide the unreachable_adapter_factory fixture: a callable returning an adapter "
            "whose store cannot be reached (or None for a store inside the process)"
        )

    # -- threads and processes --------------------------------------------------------------

    def test_threads_share_one_adapter(self, adapter: Adapter) -> None:
        """Eight threads schedule, claim and acknowledge through one adapter at once, as a
        worker's heartbeat, its job threads and a web app's request threads do."""
        threads, rounds = 8, 15
        start = threading.Barrier(threads)
        errors: list[BaseException] = []
        claimed: list[list[str]] = [[] for _ in range(threads)]

        def work(index: int) -> None:
            queue = f"thread-{index}"
            try:
                start.wait()
                for _ in range(rounds):
                    record = adapter.schedule_one(new_job(queue))
                    jobs = adapter.claim(f"w{index}", [queue], limit=2, lease=LEASE)
                    assert [job.id for job in jobs] == [record.id], (queue, jobs)
                    assert adapter.extend_many([(record.id, jobs[0].lock_token or "")], lease=LEASE)
                    assert adapter.complete(record.id, jobs[0].lock_token or "")
                    claimed[index].append(record.id)
                    assert adapter.get(record.id) is None
            except BaseException as exc:
                errors.append(exc)

        pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(120)
        assert not errors, f"{len(errors)} thread(s) failed; first: {errors[0]!r}"
        ids = [job_id for batch in claimed for job_id in batch]
        assert len(ids) == len(set(ids)) == threads * rounds
        assert adapter.counts() == []

    def test_a_forked_child_uses_its_parents_adapter(
        self, adapter: Adapter, tmp_path: Path
    ) -> None:
        """A process forked after the adapter was used (a pre-fork web server, a
        multiprocessing pool) goes on with the same object; parent and child then work at
        the same time, and neither breaks the other."""
        if not adapter.capabilities.multiprocess:
            pytest.skip("the adapter declares multiprocess=False")
        adapter.schedule_one(new_job("warm-up"))  # open connections before the fork
        adapter.counts()
        log = tmp_path / "child.log"

        def child() -> None:
            _busy_round_trips(adapter, "child", 1.0, log)

        pid = fork(child, log.with_suffix(".err"))
        _busy_round_trips(adapter, "parent", 1.0, tmp_path / "parent.log")
        wait_all([pid], [log])
        ids = log.read_text().split()
        assert ids, "the child did no work"
        stored = {c.queue: c.total for c in adapter.counts()}
        assert stored.get("child") == len(ids), "the child's jobs are not in the store"
        assert adapter.schedule_one(new_job("after")).queue == "after"

    # -- clocks -----------------------------------------------------------------------------

    def test_now_is_the_true_time_in_utc(self, adapter: Adapter) -> None:
        now = adapter.now()
        assert now.utcoffset() == timedelta(0), f"now() is not UTC: {now!r}"
        drift = abs(now.timestamp() - time.time())
        assert drift < 2.0, f"now() is {drift:.1f}s away from the true time (time zone?)"

    def test_times_come_from_the_store_not_the_caller(self, adapter: Adapter) -> None:
        """With the caller's clock five hours fast, a delay still counts from the store's
        clock and a job due in an hour is not claimed."""
        if not adapter.capabilities.multiprocess:
            pytest.skip("the adapter declares multiprocess=False: its clock is this process's")
        later = adapter.schedule_one(new_job("clock", delay=3600))
        with _caller_clock_shifted(adapter, _SHIFT):
            record = adapter.schedule_one(new_job("clock", delay=60))
            claimed = adapter.claim("w1", ["clock"], limit=5, lease=LEASE)
        true_now = datetime.fromtimestamp(time.time(), tz=later.run_at.tzinfo)
        assert close_to(record.run_at, true_now + timedelta(seconds=60), 10), (
            f"delay=60 gave run_at {record.run_at}, {true_now} now: the caller's clock was used"
        )
        assert claimed == [], "jobs due later were claimed with the caller's clock"
        stored = adapter.get(record.id)
        assert stored is not None and stored.state is JobState.SCHEDULED

    # -- names and order --------------------------------------------------------------------

    def test_queue_names_compare_exactly(self, adapter: Adapter) -> None:
        records = adapter.schedule([new_job(name) for name in ("email", "Email", "EMAIL")])
        claimed = adapter.claim("w1", ["email"], limit=5, lease=LEASE)
        assert [job.id for job in claimed] == [records[0].id], "claim(['email']) took another case"
        assert [c.queue for c in adapter.counts()] == sorted(["email", "Email", "EMAIL"])
        assert [r.id for r in adapter.list_jobs(queues=["Email"])] == [records[1].id]
        assert adapter.clear(["EMAIL"]) == 1
        assert {c.queue for c in adapter.counts()} == {"email", "Email"}

    def test_list_jobs_is_ordered_by_queue_priority_run_at_then_age(self, adapter: Adapter) -> None:
        now = adapter.now().replace(microsecond=0)
        specs = [
            (queue, priority, minutes)
            for queue in ("b", "a", "c")
            for priority in (50, 10)
            for minutes in (5, 1, 5)
        ]
        random.Random(7).shuffle(specs)
        jobs: list[NewJob] = [
            new_job(queue, priority, run_at=now - timedelta(minutes=minutes))
            for queue, priority, minutes in specs
        ]
        records = [adapter.schedule_one(job) for job in jobs]  # enqueue order = index
        expected = sorted(
            range(len(records)),
            key=lambda i: (records[i].queue, records[i].priority, records[i].run_at, i),
        )
        listed = adapter.list_jobs(limit=100)
        assert [r.id for r in listed] == [records[i].id for i in expected]
        page = adapter.list_jobs(limit=4, offset=5)
        assert [r.id for r in page] == [records[i].id for i in expected[5:9]]

    def test_a_lapsed_lock_is_running_with_an_expiry_in_the_past(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job("lapsed"))
        adapter.claim("dead-worker", ["lapsed"], limit=1, lease=SHORT_LEASE)
        time.sleep(SHORT_LEASE + 0.3)
        stored = adapter.get(record.id)
        assert stored is not None and stored.state is JobState.RUNNING
        assert stored.lock_expires_at is not None and stored.lock_expires_at <= adapter.now()
        assert stored.locked_by == "dead-worker"
        assert [(c.queue, c.running, c.ready) for c in adapter.counts()] == [("lapsed", 1, 0)]
        assert [r.id for r in adapter.list_jobs(states=[JobState.RUNNING])] == [record.id]

    # -- an unreachable store ---------------------------------------------------------------

    def test_an_unreachable_store_raises_storage_unavailable(
        self, adapter: Adapter, unreachable_adapter_factory: UnreachableFactory
    ) -> None:
        job_id = adapter.schedule_one(new_job()).id  # an id of the store's own form
        unreachable = unreachable_adapter_factory()
        if unreachable is None:
            if adapter.capabilities.multiprocess:
                pytest.fail("a store shared by processes can be unreachable: build one")
            pytest.skip("the adapter declares multiprocess=False: it lives in this process")
        calls: dict[str, Callable[[], object]] = {
            "now": unreachable.now,
            "schedule": lambda: unreachable.schedule([new_job()]),
            "claim": lambda: unreachable.claim("w1", None, limit=1, lease=LEASE),
            "complete": lambda: unreachable.complete(job_id, "token"),
            "complete_many": lambda: unreachable.complete_many([(job_id, "token")]),
            "reschedule": lambda: unreachable.reschedule(job_id, "t", delay=1, error="E"),
            "fail": lambda: unreachable.fail(job_id, "token", error="E"),
            "release": lambda: unreachable.release(job_id, "token"),
            "extend_many": lambda: unreachable.extend_many([(job_id, "token")], lease=LEASE),
            "get": lambda: unreachable.get(job_id),
            "list_jobs": unreachable.list_jobs,
            "counts": unreachable.counts,
            "retry": lambda: unreachable.retry(job_id),
            "delete": lambda: unreachable.delete(job_id),
            "clear": unreachable.clear,
        }
        wrong = {}
        try:
            for name, call in calls.items():
                try:
                    call()
                except StorageUnavailable:
                    pass
                except Exception as exc:
                    wrong[name] = f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
                else:
                    wrong[name] = "returned instead of raising StorageUnavailable"
        finally:
            with contextlib.suppress(Exception):
                unreachable.close()
        assert not wrong, f"calls on an unreachable store that did not raise it: {wrong}"


def _busy_round_trips(adapter: Adapter, queue: str, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    with log.open("w") as out:
        while time.monotonic() < deadline:
            record = adapter.schedule_one(new_job(queue))
            assert adapter.get(record.id) == record
            out.write(record.id + "\n")
            out.flush()
            adapter.counts()


@contextlib.contextmanager
def _caller_clock_shifted(adapter: Adapter, shift: timedelta) -> Iterator[None]:
    """Make ``datetime.now`` and ``time.time`` run ``shift`` ahead in the modules of the
    adapter's classes (its clock as the caller sees it), the store's clock untouched."""
    real_datetime = datetime

    class ShiftedDatetime(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> ShiftedDatetime:
            moment = real_datetime.now(tz) + shift
            return cls.fromtimestamp(moment.timestamp(), moment.tzinfo)

        @classmethod
        def utcnow(cls) -> ShiftedDatetime:
            return cls.now().replace(tzinfo=None)

    shifted_time = types.ModuleType("time")
    shifted_time.__dict__.update(vars(time))
    shifted_time.time = lambda: time.time_ns() / 1e9 + shift.total_seconds()  # type: ignore[attr-defined]
    modules = {
        sys.modules[cls.__module__]
        for cls in type(adapter).__mro__
        if cls.__module__ in sys.modules and not cls.__module__.startswith(("builtins", "abc"))
    }
    with pytest.MonkeyPatch.context() as patch:
        for module in modules:
            if getattr(module, "datetime", None) is real_datetime:
                patch.setattr(module, "datetime", ShiftedDatetime)
            if getattr(module, "time", None) is time:
                patch.setattr(module, "time", shifted_time)
        yield
