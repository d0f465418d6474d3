"""The required core of the store contract: what every adapter must do."""

from __future__ import annotations

import functools
import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from queuebox.backends.base import WORKER_LOST, Adapter, JobRecord, JobState
from queuebox.testing.support import (
    LEASE,
    SHORT_LEASE,
    AdapterFactory,
    StoreFixtures,
    claim_one,
    claim_until_empty,
    close_to,
    fork,
    new_job,
    wait_all,
)

__all__ = ["CoreContract"]


class CoreContract(StoreFixtures):
    """What every store must do: the required core of ``Adapter``. Subclasses provide the
    ``adapter_factory`` fixture."""

    #: Jobs and processes of the exactly-once test; a subclass may raise them for a store
    #: that is fast enough to take more in a test run.
    concurrent_jobs = 600
    concurrent_processes = 4

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def claim_one(
        adapter: Adapter, worker: str = "w1", *, queues: list[str] | None = None
    ) -> JobRecord:
        """Claim exactly one job (a failed assertion otherwise)."""
        return claim_one(adapter, worker, queues=queues)

    # -- scheduling -------------------------------------------------------------------------

    def test_schedule_returns_the_stored_record(self, adapter: Adapter) -> None:
        before = adapter.now()
        record = adapter.schedule_one(new_job("email", 10, args=[42]))
        assert isinstance(record.id, str) and record.id
        assert record.name == "ContractJob"
        assert json.loads(record.handler) == {"name": "ContractJob", "args": [42], "kwargs": {}}
        assert (record.queue, record.priority, record.attempts) == ("email", 10, 0)
        assert record.state is JobState.READY
        assert record.locked_at is None and record.locked_by is None and record.lock_token is None
        assert record.failed_at is None and record.last_error is None
        assert close_to(record.run_at, before)
        assert record.run_at.tzinfo is not None
        assert adapter.get(record.id) == record

    def test_schedule_many_keeps_order_and_gives_unique_ids(self, adapter: Adapter) -> None:
        jobs = [new_job(args=[index]) for index in range(25)]
        records = adapter.schedule(jobs)
        assert [json.loads(r.handler)["args"] for r in records] == [[i] for i in range(25)]
        assert len({record.id for record in records}) == 25
        assert adapter.schedule([]) == []

    def test_a_large_batch_returns_exactly_what_get_reads_back(self, adapter: Adapter) -> None:
        """Over a thousand jobs in one call cross every batching boundary a store has (jobs
        per statement, per transaction, per pipeline): each record in input order is the
        stored job, for jobs due now, delayed, at a time, on other queues and priorities."""
        at = (adapter.now() + timedelta(hours=1)).replace(microsecond=0)  # any store's precision
        jobs = [
            new_job(
                f"q{index % 3}",
                1 + index % 100,
                args=[index, "é ☕"],
                delay=3600.0 if index % 5 == 1 else 0.0,
                run_at=at if index % 5 == 2 else None,
            )
            for index in range(1201)
        ]
        records = adapter.schedule(jobs)
        assert [json.loads(r.handler)["args"][0] for r in records] == list(range(1201))
        assert [(r.queue, r.priority) for r in records] == [(j.queue, j.priority) for j in jobs]
        assert len({record.id for record in records}) == 1201
        states = {record.state for index, record in enumerate(records) if index % 5 in (1, 2)}
        assert states == {JobState.SCHEDULED}
        assert records[0].state is JobState.READY and records[2].run_at == at
        assert [adapter.get(record.id) for record in records] == records

    def test_handler_text_round_trips_exactly(self, adapter: Adapter) -> None:
        text = ["naïve café ☕", "\u0000nul", "line\nbreak", "𝄞", 1.5, None, {"k": [True]}]
        record = adapter.schedule_one(new_job(args=text))
        assert json.loads(record.handler)["args"] == text
        claimed = self.claim_one(adapter)
        stored = adapter.get(record.id)
        assert claimed.handler == record.handler
        assert stored is not None and stored.handler == record.handler

    def test_delayed_job_is_scheduled_until_due(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job(delay=3600))
        assert record.state is JobState.SCHEDULED
        assert close_to(record.run_at, adapter.now() + timedelta(hours=1))
        assert adapter.claim("w1", None, limit=5, lease=LEASE) == []

    def test_delayed_job_becomes_claimable_when_due(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job(delay=0.4))
        assert adapter.claim("w1", None, limit=1, lease=LEASE) == []
        time.sleep(0.6)
        assert [job.id for job in adapter.claim("w1", None, limit=1, lease=LEASE)] == [record.id]

    def test_absolute_run_at(self, adapter: Adapter) -> None:
        now = adapter.now()
        future = adapter.schedule_one(new_job(run_at=now + timedelta(days=1)))
        past = adapter.schedule_one(new_job(run_at=now - timedelta(days=1)))
        assert close_to(future.run_at, now + timedelta(days=1), 1)
        assert future.state is JobState.SCHEDULED and past.state is JobState.READY
        assert [job.id for job in adapter.claim("w1", None, limit=5, lease=LEASE)] == [past.id]

    # -- claim ------------------------------------------------------------------------------

    def test_claim_orders_by_priority_then_run_at_then_enqueue(self, adapter: Adapter) -> None:
        now = adapter.now()
        late = adapter.schedule_one(new_job("a", 50, run_at=now - timedelta(minutes=1)))
        early = adapter.schedule_one(new_job("b", 50, run_at=now - timedelta(minutes=5)))
        urgent = adapter.schedule_one(new_job("c", 1))
        tie_first = adapter.schedule_one(new_job("a", 70, run_at=now - timedelta(minutes=9)))
        tie_second = adapter.schedule_one(new_job("b", 70, run_at=now - timedelta(minutes=9)))
        claimed = adapter.claim("w1", None, limit=10, lease=LEASE)
        expected = [urgent.id, early.id, late.id, tie_first.id, tie_second.id]
        assert [job.id for job in claimed] == expected

    def test_claim_one_at_a_time_follows_the_same_order(self, adapter: Adapter) -> None:
        now = adapter.now()
        ids = [
            adapter.schedule_one(new_job(q, p, run_at=now - timedelta(seconds=s))).id
            for q, p, s in [("x", 5, 1), ("y", 5, 2), ("z", 1, 0), ("x", 9, 99)]
        ]
        order = [self.claim_one(adapter, queues=["x", "y", "z"]).id for _ in range(4)]
        assert order == [ids[2], ids[1], ids[0], ids[3]]

    def test_claim_only_from_the_given_queues(self, adapter: Adapter) -> None:
        email = adapter.schedule_one(new_job("email"))
        other = adapter.schedule_one(new_job("other", 1))
        reports = adapter.schedule_one(new_job("reports.daily-v2_x"))
        claimed = adapter.claim("w1", ["email", "reports.daily-v2_x"], limit=10, lease=LEASE)
        assert {job.id for job in claimed} == {email.id, reports.id}
        assert adapter.claim("w1", ["nothing-here"], limit=10, lease=LEASE) == []
        assert [job.id for job in adapter.claim("w1", None, limit=10, lease=LEASE)] == [other.id]

    def test_claim_respects_the_limit(self, adapter: Adapter) -> None:
        adapter.schedule([new_job() for _ in range(7)])
        assert len(adapter.claim("w1", None, limit=3, lease=LEASE)) == 3
        assert len(adapter.claim("w2", None, limit=3, lease=LEASE)) == 3
        assert len(adapter.claim("w3", None, limit=3, lease=LEASE)) == 1
        assert adapter.claim("w4", None, limit=3, lease=LEASE) == []

    def test_claim_locks_the_job(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job())
        now = adapter.now()
        claimed = self.claim_one(adapter, "worker-7")
        assert claimed.id == record.id
        assert claimed.attempts == 1
        assert claimed.state is JobState.RUNNING
        assert claimed.locked_by == "worker-7"
        assert claimed.lock_token and len(claimed.lock_token) >= 16
        assert close_to(claimed.locked_at, now)
        assert close_to(claimed.lock_expires_at, now + timedelta(seconds=LEASE))
        stored = adapter.get(record.id)
        assert stored is not None and stored.state is JobState.RUNNING
        assert stored.locked_by == "worker-7" and stored.attempts == 1
        assert stored.lock_token is None, "the lock token must not leave the claiming worker"
        assert adapter.claim("worker-8", None, limit=5, lease=LEASE) == []

    def test_each_claim_gets_a_fresh_token(self, adapter: Adapter) -> None:
        adapter.schedule([new_job(), new_job()])
        first, second = adapter.claim("w1", None, limit=2, lease=LEASE)
        assert first.lock_token != second.lock_token
        assert adapter.release(first.id, first.lock_token or "")
        again = self.claim_one(adapter)
        assert again.id == first.id and again.lock_token != first.lock_token

    def test_expired_lock_is_reclaimed_and_counts_an_attempt(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job())
        lost = adapter.claim("lost-worker", None, limit=1, lease=SHORT_LEASE)[0]
        assert adapter.claim("w2", None, limit=1, lease=LEASE) == []
        time.sleep(SHORT_LEASE + 0.3)
        taken = self.claim_one(adapter, "w2")
        assert taken.id == record.id
        assert taken.attempts == 2
        assert taken.locked_by == "w2"
        assert taken.last_error is not None and taken.last_error.startswith(WORKER_LOST)
        assert "lost-worker" in taken.last_error
        assert taken.lock_token != lost.lock_token

    def test_former_owner_cannot_write_after_reclaim(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job())
        lost = adapter.claim("lost-worker", None, limit=1, lease=SHORT_LEASE)[0]
        time.sleep(SHORT_LEASE + 0.3)
        owner = self.claim_one(adapter, "w2")
        before = adapter.get(record.id)
        token = lost.lock_token or ""
        assert adapter.complete(record.id, token) is False
        assert adapter.complete(record.id, token, keep=True) is False
        assert adapter.complete_many([(record.id, token)]) == [False]
        assert adapter.reschedule(record.id, token, delay=0, error="stale") is False
        assert adapter.fail(record.id, token, error="stale") is False
        assert adapter.fail(record.id, token, error="stale", keep=False) is False
        assert adapter.release(record.id, token) is False
        assert adapter.extend(record.id, token, lease=LEASE) is False
        assert adapter.get(record.id) == before
        assert adapter.complete(record.id, owner.lock_token or "") is True

    def test_writes_with_a_wrong_token_or_id_change_nothing(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job())
        self.claim_one(adapter)
        before = adapter.get(record.id)
        for job_id, token in [(record.id, "not-the-token"), ("999999999", "x"), ("bogus", "x")]:
            assert adapter.complete(job_id, token) is False
            assert adapter.reschedule(job_id, token, delay=1, error="e") is False
            assert adapter.fail(job_id, token, error="e") is False
            assert adapter.release(job_id, token) is False
            assert adapter.extend(job_id, token, lease=1) is False
        assert adapter.get(record.id) == before

    def test_unlocked_job_refuses_worker_writes(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job())
        claimed = self.claim_one(adapter)
        assert adapter.release(record.id, claimed.lock_token or "")
        token = claimed.lock_token or ""
        assert adapter.complete(record.id, token) is False
        assert adapter.extend(record.id, token, lease=LEASE) is False
        stored = adapter.get(record.id)
        assert stored is not None and stored.state is JobState.READY

    # -- outcomes ---------------------------------------------------------------------------

    def test_complete_deletes_the_job(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job())
        claimed = self.claim_one(adapter)
        assert adapter.complete(record.id, claimed.lock_token or "") is True
        assert adapter.get(record.id) is None
        assert adapter.complete(record.id, claimed.lock_token or "") is False

    def test_complete_keep_marks_it_completed(self, adapter: Adapter) -> None:
        if not adapter.capabilities.keep_completed:
            pytest.skip("the adapter declares keep_completed=False")
        record = adapter.schedule_one(new_job("q1"))
        claimed = self.claim_one(adapter)
        assert adapter.complete(record.id, claimed.lock_token or "", keep=True) is True
        stored = adapter.get(record.id)
        assert stored is not None
        assert stored.state is JobState.COMPLETED
        assert stored.completed_at is not None and stored.locked_at is None
        assert stored.locked_by is None and stored.lock_expires_at is None
        assert adapter.claim("w1", None, limit=5, lease=LEASE) == []
        assert [c.completed for c in adapter.counts()] == [1]

    def test_complete_many(self, adapter: Adapter) -> None:
        records = adapter.schedule([new_job() for _ in range(5)])
        claimed = adapter.claim("w1", None, limit=5, lease=LEASE)
        acks = [(job.id, job.lock_token or "") for job in claimed]
        acks.insert(2, (claimed[0].id, "wrong-token"))
        assert adapter.complete_many(acks) == [True, True, False, True, True, True]
        assert all(adapter.get(record.id) is None for record in records)
        assert adapter.complete_many([]) == []

    def test_reschedule_unlocks_records_the_error_and_delays(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job())
        claimed = self.claim_one(adapter)
        now = adapter.now()
        assert adapter.reschedule(record.id, claimed.lock_token or "", delay=81, error="E: boom")
        stored = adapter.get(record.id)
        assert stored is not None
        assert stored.state is JobState.SCHEDULED
        assert stored.attempts == 1 and stored.last_error == "E: boom"
        assert stored.locked_at is None and stored.locked_by is None
        assert stored.lock_expires_at is None and stored.failed_at is None
        assert close_to(stored.run_at, now + timedelta(seconds=81))
        assert adapter.claim("w1", None, limit=1, lease=LEASE) == []

    def test_rescheduled_job_runs_again_and_keeps_counting(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job())
        first = self.claim_one(adapter)
        assert adapter.reschedule(record.id, first.lock_token or "", delay=0, error="E: 1")
        second = self.claim_one(adapter)
        assert second.id == record.id and second.attempts == 2
        assert second.last_error == "E: 1"

    def test_fail_keeps_the_job_for_inspection(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job("q1"))
        claimed = self.claim_one(adapter)
        now = adapter.now()
        assert adapter.fail(record.id, claimed.lock_token or "", error="E: final") is True
        stored = adapter.get(record.id)
        assert stored is not None
        assert stored.state is JobState.FAILED
        assert close_to(stored.failed_at, now)
        assert stored.last_error == "E: final" and stored.attempts == 1
        assert stored.locked_at is None and stored.locked_by is None
        assert adapter.claim("w1", None, limit=5, lease=LEASE) == []
        assert [(c.queue, c.failed) for c in adapter.counts()] == [("q1", 1)]

    def test_fail_without_keep_deletes(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job())
        claimed = self.claim_one(adapter)
        assert adapter.fail(record.id, claimed.lock_token or "", error="E", keep=False)
        assert adapter.get(record.id) is None

    def test_release_gives_back_the_attempt(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job())
        claimed = self.claim_one(adapter)
        assert adapter.release(record.id, claimed.lock_token or "") is True
        stored = adapter.get(record.id)
        assert stored is not None
        assert stored.state is JobState.READY and stored.attempts == 0
        assert stored.locked_by is None and stored.lock_expires_at is None
        assert stored.run_at == record.run_at
        assert self.claim_one(adapter).attempts == 1

    def test_extend_keeps_the_lock_alive(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job())
        claimed = adapter.claim("w1", None, limit=1, lease=SHORT_LEASE)[0]
        assert adapter.extend(record.id, claimed.lock_token or "", lease=LEASE) is True
        stored = adapter.get(record.id)
        assert stored is not None
        assert close_to(stored.lock_expires_at, adapter.now() + timedelta(seconds=LEASE))
        time.sleep(SHORT_LEASE + 0.3)
        assert adapter.claim("w2", None, limit=1, lease=LEASE) == []
        # The lease given to extend, not the claim's or a fixed one: a worker whose jobs may
        # stall for minutes sets a long lease, and a lock cut short would let another run it.
        assert adapter.extend(record.id, claimed.lock_token or "", lease=LEASE * 3) is True
        stored = adapter.get(record.id)
        assert stored is not None
        assert close_to(stored.lock_expires_at, adapter.now() + timedelta(seconds=LEASE * 3))
        assert adapter.complete(record.id, claimed.lock_token or "") is True

    def test_extend_many_renews_every_held_lock_in_order(self, adapter: Adapter) -> None:
        records = adapter.schedule([new_job() for _ in range(3)])
        held = adapter.claim("w1", None, limit=3, lease=SHORT_LEASE)
        assert {job.id for job in held} == {record.id for record in records}
        locks = [(job.id, job.lock_token or "") for job in held]
        locks.insert(1, (held[0].id, "not-the-token"))
        locks.append(("bogus", "x"))
        assert adapter.extend_many(locks, lease=LEASE) == [True, False, True, True, False]
        assert adapter.extend_many([], lease=LEASE) == []
        time.sleep(SHORT_LEASE + 0.3)
        assert adapter.claim("w2", None, limit=3, lease=LEASE) == [], "a renewed lock lapsed"
        for job in held:
            stored = adapter.get(job.id)
            assert stored is not None
            assert close_to(stored.lock_expires_at, adapter.now() + timedelta(seconds=LEASE))
        assert adapter.extend_many(locks[:1], lease=LEASE * 3) == [True]  # its own lease
        stored = adapter.get(held[0].id)
        assert stored is not None
        assert close_to(stored.lock_expires_at, adapter.now() + timedelta(seconds=LEASE * 3))

    def test_extend_many_refuses_a_lock_taken_over(self, adapter: Adapter) -> None:
        adapter.schedule_one(new_job())
        lost = adapter.claim("lost-worker", None, limit=1, lease=SHORT_LEASE)[0]
        time.sleep(SHORT_LEASE + 0.3)
        owner = self.claim_one(adapter, "w2")
        assert adapter.extend_many([(lost.id, lost.lock_token or "")], lease=LEASE) == [False]
        assert adapter.extend_many([(owner.id, owner.lock_token or "")], lease=LEASE) == [True]

    # -- administration ---------------------------------------------------------------------

    def test_get_unknown_ids(self, adapter: Adapter) -> None:
        for job_id in ["999999999", "not-an-id", "", "-1", "1' OR '1'='1"]:
            assert adapter.get(job_id) is None
            assert adapter.delete(job_id) is False
            assert adapter.retry(job_id) is False

    def test_retry_a_failed_job(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job())
        claimed = self.claim_one(adapter)
        adapter.fail(record.id, claimed.lock_token or "", error="E")
        assert adapter.retry(record.id) is True
        stored = adapter.get(record.id)
        assert stored is not None
        assert stored.state is JobState.READY and stored.attempts == 0
        assert stored.failed_at is None
        assert self.claim_one(adapter).id == record.id

    def test_retry_a_scheduled_job_runs_it_now(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job(delay=3600))
        assert adapter.retry(record.id) is True
        assert self.claim_one(adapter).id == record.id

    def test_retry_leaves_a_running_job_alone(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job())
        self.claim_one(adapter)
        before = adapter.get(record.id)
        assert adapter.retry(record.id) is False
        assert adapter.get(record.id) == before

    def test_delete(self, adapter: Adapter) -> None:
        keep, doomed = adapter.schedule([new_job(), new_job()])
        assert adapter.delete(doomed.id) is True
        assert adapter.get(doomed.id) is None
        assert adapter.delete(doomed.id) is False
        assert adapter.get(keep.id) is not None

    def test_delete_a_running_job(self, adapter: Adapter) -> None:
        record = adapter.schedule_one(new_job())
        claimed = self.claim_one(adapter)
        assert adapter.delete(record.id) is True
        assert adapter.complete(record.id, claimed.lock_token or "") is False
        assert adapter.get(record.id) is None

    def test_clear_all_and_some_queues(self, adapter: Adapter) -> None:
        adapter.schedule([new_job("a"), new_job("a"), new_job("b"), new_job("c", delay=999)])
        self.claim_one(adapter, queues=["b"])
        assert adapter.clear(["a"]) == 2
        assert [c.queue for c in adapter.counts()] == ["b", "c"]
        assert adapter.clear() == 2
        assert adapter.counts() == []
        assert adapter.claim("w1", None, limit=5, lease=LEASE) == []

    def test_counts_per_queue_and_state(self, adapter: Adapter) -> None:
        adapter.schedule(
            [new_job("a"), new_job("a"), new_job("a", delay=999), new_job("b"), new_job("b")]
        )
        running = self.claim_one(adapter, queues=["b"])
        failing = self.claim_one(adapter, queues=["b"])
        adapter.fail(failing.id, failing.lock_token or "", error="E")
        counts = {c.queue: c for c in adapter.counts()}
        assert list(counts) == ["a", "b"]
        assert (counts["a"].ready, counts["a"].scheduled, counts["a"].total) == (2, 1, 3)
        assert (counts["b"].running, counts["b"].failed, counts["b"].ready) == (1, 1, 0)
        assert running.queue == "b"

    def test_list_jobs_filters_and_pages(self, adapter: Adapter) -> None:
        records = adapter.schedule([new_job("a", p) for p in (30, 10, 20)] + [new_job("b")])
        by_priority = sorted(records[:3], key=lambda r: r.priority)
        listed = adapter.list_jobs(queues=["a"])
        assert [r.id for r in listed] == [r.id for r in by_priority]
        assert all(r.lock_token is None for r in listed)
        assert [r.id for r in adapter.list_jobs(queues=["a"], limit=1, offset=1)] == [
            by_priority[1].id
        ]
        claimed = self.claim_one(adapter, queues=["b"])
        running = adapter.list_jobs(states=[JobState.RUNNING])
        assert [r.id for r in running] == [claimed.id]
        assert len(adapter.list_jobs(states=[JobState.READY])) == 3
        assert len(adapter.list_jobs()) == 4

    # -- waiting for work -------------------------------------------------------------------

    def test_wait_for_work_returns_by_the_timeout(self, adapter: Adapter) -> None:
        started = time.monotonic()
        adapter.wait_for_work(["idle-queue"], 0.2)
        assert time.monotonic() - started < 2.0

    def test_wait_for_work_wakes_on_enqueue(self, adapter_factory: AdapterFactory) -> None:
        waiter = adapter_factory()
        if not waiter.capabilities.wakeup:
            waiter.close()
            pytest.skip("the adapter declares wakeup=False")
        producer = adapter_factory() if waiter.capabilities.multiprocess else waiter
        try:
            waiter.wait_for_work(["wake"], 0.05)  # let a store subscribe before the enqueue
            timer = threading.Timer(0.3, lambda: producer.schedule_one(new_job("wake")))
            started = time.monotonic()
            timer.start()
            waiter.wait_for_work(["wake"], 10.0)
            elapsed = time.monotonic() - started
            timer.join()
            assert elapsed < 3.0, f"wait_for_work slept {elapsed:.2f}s through an enqueue"
        finally:
            if producer is not waiter:
                producer.close()
            waiter.close()

    # -- concurrency ------------------------------------------------------------------------

    def test_concurrent_processes_claim_each_job_exactly_once(
        self, adapter: Adapter, adapter_factory: AdapterFactory, tmp_path: Path
    ) -> None:
        if not adapter.capabilities.multiprocess:
            pytest.skip("the adapter declares multiprocess=False")
        total, processes = self.concurrent_jobs, self.concurrent_processes
        records = adapter.schedule([new_job(f"q{i % 3}", 1 + i % 5) for i in range(total)])
        logs = [tmp_path / f"w{n}.log" for n in range(processes)]
        pids = [
            fork(
                functools.partial(claim_until_empty, adapter_factory, log), log.with_suffix(".err")
            )
            for log in logs
        ]
        wait_all(pids, logs)
        claimed = [line for log in logs for line in log.read_text().split()]
        assert sorted(claimed) == sorted(record.id for record in records)
        assert len(set(claimed)) == total
        assert adapter.counts() == []
