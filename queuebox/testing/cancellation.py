"""The contract of ``Cancellation``: waiting jobs are cancelled at once, running ones are
marked for their worker, finished ones are left alone."""

from __future__ import annotations

import time
from typing import cast

import pytest

from queuebox.backends.base import Adapter, Cancellation, CancelOutcome, JobState
from queuebox.testing.support import (
    LEASE,
    SHORT_LEASE,
    StoreFixtures,
    claim_one,
    close_to,
    new_job,
)

__all__ = ["CancellableAdapter", "CancellationContract"]


class CancellableAdapter(Adapter, Cancellation):
    """For type checking only: an adapter that declares ``Cancellation``."""


class CancellationContract(StoreFixtures):
    """``Cancellation`` (``queuebox.cancel``), checked on the adapter alone."""

    @pytest.fixture
    def cancellable(self, adapter: Adapter) -> CancellableAdapter:
        if not isinstance(adapter, Cancellation):
            pytest.skip(f"{type(adapter).__name__} does not declare Cancellation")
        return cast(CancellableAdapter, adapter)

    @pytest.mark.parametrize("delay", [0, 3600])
    def test_a_waiting_job_is_cancelled_at_once(
        self, cancellable: CancellableAdapter, delay: float
    ) -> None:
        adapter = cancellable
        record = adapter.schedule_one(new_job("q1", delay=delay))
        other = adapter.schedule_one(new_job("q1"))
        now = adapter.now()
        assert adapter.cancel(record.id) is CancelOutcome.CANCELLED
        stored = adapter.get(record.id)
        assert stored is not None and stored.state is JobState.CANCELLED
        assert close_to(stored.cancelled_at, now)
        assert stored.locked_at is None and stored.failed_at is None
        assert [job.id for job in adapter.claim("w1", None, limit=5, lease=LEASE)] == [other.id]
        counts = adapter.counts()
        assert [(c.queue, c.cancelled, c.running, c.total) for c in counts] == [("q1", 1, 1, 2)]
        listed = adapter.list_jobs(states=[JobState.CANCELLED])
        assert [job.id for job in listed] == [record.id]

    def test_a_running_job_is_marked_for_its_worker(self, cancellable: CancellableAdapter) -> None:
        adapter = cancellable
        record = adapter.schedule_one(new_job())
        bystander = adapter.schedule_one(new_job())
        held = adapter.claim("w1", None, limit=2, lease=LEASE)
        assert {job.id for job in held} == {record.id, bystander.id}
        assert adapter.cancel(record.id) is CancelOutcome.REQUESTED
        stored = adapter.get(record.id)
        assert stored is not None and stored.state is JobState.RUNNING
        assert stored.cancelled_at is not None and stored.locked_by == "w1"
        assert adapter.cancel_requested([job.id for job in held]) == {record.id}
        assert adapter.cancel_requested([]) == set()
        assert adapter.cancel(record.id) is CancelOutcome.REQUESTED, "asking twice is harmless"
        token = next(job.lock_token for job in held if job.id == record.id) or ""
        assert adapter.mark_cancelled(record.id, "not-the-token") is False
        assert adapter.mark_cancelled(record.id, token, error="JobCancelled: stopped") is True
        final = adapter.get(record.id)
        assert final is not None and final.state is JobState.CANCELLED
        assert final.locked_at is None and final.locked_by is None
        assert final.lock_expires_at is None
        assert final.last_error == "JobCancelled: stopped"
        assert adapter.mark_cancelled(record.id, token) is False, "the lock is gone"
        assert adapter.cancel(record.id) is CancelOutcome.FINISHED

    def test_a_cancelled_run_is_never_claimed_again(self, cancellable: CancellableAdapter) -> None:
        adapter = cancellable
        record = adapter.schedule_one(new_job())
        claimed = adapter.claim("dying-worker", None, limit=1, lease=SHORT_LEASE)[0]
        assert adapter.cancel(record.id) is CancelOutcome.REQUESTED
        time.sleep(SHORT_LEASE + 0.3)
        assert adapter.claim("w2", None, limit=5, lease=LEASE) == []
        stored = adapter.get(record.id)
        assert stored is not None and stored.state is JobState.CANCELLED, (
            "a cancelled job whose worker died is cancelled, not running"
        )
        assert adapter.cancel(record.id) is CancelOutcome.FINISHED
        assert claimed.id == record.id

    def test_a_lapsed_lock_is_cancelled_at_once(self, cancellable: CancellableAdapter) -> None:
        adapter = cancellable
        record = adapter.schedule_one(new_job())
        adapter.claim("dead-worker", None, limit=1, lease=SHORT_LEASE)
        time.sleep(SHORT_LEASE + 0.3)
        assert adapter.cancel(record.id) is CancelOutcome.CANCELLED
        stored = adapter.get(record.id)
        assert stored is not None and stored.state is JobState.CANCELLED
        assert adapter.claim("w2", None, limit=5, lease=LEASE) == []

    def test_a_reschedule_after_a_cancel_request_does_not_run_it_again(
        self, cancellable: CancellableAdapter
    ) -> None:
        adapter = cancellable
        record = adapter.schedule_one(new_job())
        claimed = claim_one(adapter)
        assert adapter.cancel(record.id) is CancelOutcome.REQUESTED
        # The worker had not seen the request yet and reports an error as usual.
        assert adapter.reschedule(record.id, claimed.lock_token or "", delay=0, error="E: x")
        stored = adapter.get(record.id)
        assert stored is not None and stored.state is JobState.CANCELLED
        assert adapter.claim("w2", None, limit=5, lease=LEASE) == []

    def test_a_success_after_a_cancel_request_is_recorded(
        self, cancellable: CancellableAdapter
    ) -> None:
        adapter = cancellable
        record = adapter.schedule_one(new_job())
        claimed = claim_one(adapter)
        assert adapter.cancel(record.id) is CancelOutcome.REQUESTED
        assert adapter.complete(record.id, claimed.lock_token or "") is True
        assert adapter.get(record.id) is None

    def test_a_job_may_cancel_itself(self, cancellable: CancellableAdapter) -> None:
        adapter = cancellable
        record = adapter.schedule_one(new_job())
        claimed = claim_one(adapter)
        assert adapter.mark_cancelled(record.id, claimed.lock_token or "") is True
        stored = adapter.get(record.id)
        assert stored is not None and stored.state is JobState.CANCELLED
        assert stored.cancelled_at is not None

    def test_finished_and_unknown_jobs(self, cancellable: CancellableAdapter) -> None:
        adapter = cancellable
        failed = adapter.schedule_one(new_job())
        kept = adapter.schedule_one(new_job())
        first = claim_one(adapter)
        second = claim_one(adapter)
        tokens = {first.id: first.lock_token or "", second.id: second.lock_token or ""}
        assert adapter.fail(failed.id, tokens[failed.id], error="E")
        if adapter.capabilities.keep_completed:
            assert adapter.complete(kept.id, tokens[kept.id], keep=True)
            assert adapter.cancel(kept.id) is CancelOutcome.FINISHED
        assert adapter.cancel(failed.id) is CancelOutcome.FINISHED
        stored = adapter.get(failed.id)
        assert stored is not None and stored.state is JobState.FAILED
        for job_id in ["999999999", "bogus", "", "default/999999"]:
            assert adapter.cancel(job_id) is CancelOutcome.NOT_FOUND

    def test_cancelling_frees_the_unique_key(self, cancellable: CancellableAdapter) -> None:
        adapter = cancellable
        if not adapter.capabilities.unique:
            pytest.skip("the adapter declares unique=False")
        waiting = adapter.schedule_one(new_job(unique_key="k"))
        assert adapter.cancel(waiting.id) is CancelOutcome.CANCELLED
        running = adapter.schedule_one(new_job(unique_key="k"))
        assert running.id != waiting.id
        claimed = claim_one(adapter)
        assert adapter.cancel(running.id) is CancelOutcome.REQUESTED
        assert adapter.schedule_one(new_job(unique_key="k")).id == running.id, (
            "a running job keeps its key until its worker stops it"
        )
        assert adapter.mark_cancelled(running.id, claimed.lock_token or "")
        assert adapter.schedule_one(new_job(unique_key="k")).id not in {waiting.id, running.id}

    def test_retry_runs_a_cancelled_job_again(self, cancellable: CancellableAdapter) -> None:
        adapter = cancellable
        record = adapter.schedule_one(new_job(delay=3600))
        assert adapter.cancel(record.id) is CancelOutcome.CANCELLED
        assert adapter.retry(record.id) is True
        stored = adapter.get(record.id)
        assert stored is not None and stored.state is JobState.READY
        assert stored.cancelled_at is None and stored.attempts == 0
        assert claim_one(adapter).id == record.id

    def test_retry_after_a_dead_workers_cancelled_run(
        self, cancellable: CancellableAdapter
    ) -> None:
        adapter = cancellable
        record = adapter.schedule_one(new_job())
        adapter.claim("dead-worker", None, limit=1, lease=SHORT_LEASE)
        assert adapter.cancel(record.id) is CancelOutcome.REQUESTED
        time.sleep(SHORT_LEASE + 0.3)
        assert adapter.retry(record.id) is True
        again = claim_one(adapter, "w2")
        assert again.id == record.id and again.attempts == 1

    def test_clear_and_delete_remove_cancelled_jobs(self, cancellable: CancellableAdapter) -> None:
        adapter = cancellable
        first, second = adapter.schedule([new_job("a"), new_job("a")])
        assert adapter.cancel(first.id) is CancelOutcome.CANCELLED
        assert adapter.cancel(second.id) is CancelOutcome.CANCELLED
        assert adapter.delete(first.id) is True
        assert adapter.clear(["a"]) == 1
        assert adapter.counts() == []
