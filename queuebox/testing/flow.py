"""The contract of ``FlowControl``: paused queues and per-key limits, inside the claim."""

from __future__ import annotations

import time
from typing import cast

import pytest

from queuebox.backends.base import (
    Adapter,
    Cancellation,
    FlowControl,
    JobState,
    NewJob,
    PipelinedClaims,
    RateLimit,
)
from queuebox.testing.support import LEASE, SHORT_LEASE, AdapterFactory, StoreFixtures, new_job

__all__ = ["FlowControlContract", "limited_job"]


class FlowAdapter(Adapter, FlowControl):
    """For type checking only: an adapter that declares ``FlowControl``."""


def limited_job(
    key: str,
    *,
    queue: str = "default",
    priority: int = 50,
    max_concurrency: int | None = None,
    rate: str | None = None,
    args: list[object] | None = None,
) -> NewJob:
    job = new_job(queue, priority, args=args)
    return NewJob(
        name=job.name,
        handler=job.handler,
        queue=queue,
        priority=priority,
        limit_key=key,
        max_concurrency=max_concurrency,
        rate_limit=None if rate is None else RateLimit.parse(rate),
    )


class FlowControlContract(StoreFixtures):
    @pytest.fixture
    def flow(self, adapter: Adapter) -> FlowAdapter:
        if not isinstance(adapter, FlowControl):
            pytest.skip(f"{type(adapter).__name__} does not declare FlowControl")
        return cast(FlowAdapter, adapter)

    # -- pause and resume -------------------------------------------------------------------

    def test_a_paused_queue_is_never_claimed(self, flow: FlowAdapter) -> None:
        paused = flow.schedule([new_job("reports"), new_job("reports", 1)])
        other = flow.schedule_one(new_job("email"))
        assert flow.pause("reports") is True
        assert flow.pause("reports") is False, "pausing twice changes nothing"
        assert flow.paused_queues() == {"reports"}
        assert [job.id for job in flow.claim("w1", None, limit=10, lease=LEASE)] == [other.id]
        assert flow.claim("w1", ["reports"], limit=10, lease=LEASE) == []
        late = flow.schedule_one(new_job("reports"))
        assert late.state is JobState.READY, "jobs are still scheduled on a paused queue"
        assert flow.resume("reports") is True
        assert flow.resume("reports") is False
        assert flow.paused_queues() == set()
        claimed = flow.claim("w1", ["reports"], limit=10, lease=LEASE)
        assert {job.id for job in claimed} == {paused[0].id, paused[1].id, late.id}

    def test_a_pause_is_stored(self, flow: FlowAdapter, adapter_factory: AdapterFactory) -> None:
        flow.pause("held")
        if flow.capabilities.multiprocess:
            other = adapter_factory()
            try:
                assert isinstance(other, FlowControl)
                assert other.paused_queues() == {"held"}
            finally:
                other.close()

    def test_fused_claims_respect_a_pause(self, flow: FlowAdapter) -> None:
        if not isinstance(flow, PipelinedClaims):
            pytest.skip("the adapter does not declare PipelinedClaims")
        flow.schedule_one(new_job("q"))
        flow.pause("q")
        _, claimed = flow.complete_and_claim([], worker_id="w1", queue="q", limit=5, lease=LEASE)
        assert claimed == []
        assert flow.wait_and_claim("w1", "q", limit=5, lease=LEASE, timeout=0.2) == []

    # -- concurrency limits -----------------------------------------------------------------

    def test_at_most_max_concurrency_runs_per_key(self, flow: FlowAdapter) -> None:
        limited = flow.schedule([limited_job("k", max_concurrency=2) for _ in range(5)])
        free = flow.schedule([new_job(priority=90) for _ in range(3)])
        claimed = flow.claim("w1", None, limit=10, lease=LEASE)
        ids = {job.id for job in claimed}
        assert len(ids & {r.id for r in limited}) == 2, "the limit of 2 was not kept"
        assert {r.id for r in free} <= ids, "jobs without a limit were held up"
        assert flow.claim("w2", None, limit=10, lease=LEASE) == []
        waiting = [flow.get(r.id) for r in limited if r.id not in ids]
        assert all(job is not None and job.attempts == 0 for job in waiting), "held back"
        assert all(job is not None and job.state is JobState.READY for job in waiting)

    def test_keys_are_limited_apart(self, flow: FlowAdapter) -> None:
        flow.schedule([limited_job("a", max_concurrency=1) for _ in range(3)])
        flow.schedule([limited_job("b", max_concurrency=2) for _ in range(3)])
        claimed = flow.claim("w1", None, limit=10, lease=LEASE)
        keys = sorted(job.limit_key or "" for job in claimed)
        assert keys == ["a", "b", "b"]

    def test_a_held_back_key_does_not_block_later_jobs(self, flow: FlowAdapter) -> None:
        flow.schedule([limited_job("busy", priority=1, max_concurrency=1) for _ in range(200)])
        behind = flow.schedule([new_job(priority=99) for _ in range(5)])
        first = flow.claim("w1", None, limit=1, lease=LEASE)
        assert [job.limit_key for job in first] == ["busy"]
        claimed = flow.claim("w2", None, limit=5, lease=LEASE)
        assert [job.id for job in claimed] == [record.id for record in behind]

    @pytest.mark.parametrize("outcome", ["complete", "reschedule", "fail", "release", "cancel"])
    def test_every_outcome_frees_the_slot(self, flow: FlowAdapter, outcome: str) -> None:
        flow.schedule([limited_job("k", max_concurrency=1) for _ in range(2)])
        [held] = flow.claim("w1", None, limit=5, lease=LEASE)
        token = held.lock_token or ""
        assert flow.claim("w1", None, limit=5, lease=LEASE) == []
        if outcome == "complete":
            assert flow.complete(held.id, token)
        elif outcome == "reschedule":
            assert flow.reschedule(held.id, token, delay=3600, error="E")
        elif outcome == "fail":
            assert flow.fail(held.id, token, error="E")
        elif outcome == "release":
            assert flow.release(held.id, token)
        else:
            if not isinstance(flow, Cancellation):
                pytest.skip("the adapter does not declare Cancellation")
            assert flow.mark_cancelled(held.id, token)
        assert len(flow.claim("w2", None, limit=5, lease=LEASE)) == 1

    def test_a_lapsed_lock_frees_its_slot(self, flow: FlowAdapter) -> None:
        flow.schedule([limited_job("k", max_concurrency=1) for _ in range(2)])
        flow.claim("dead-worker", None, limit=5, lease=SHORT_LEASE)
        assert flow.claim("w2", None, limit=5, lease=LEASE) == []
        time.sleep(SHORT_LEASE + 0.3)
        assert len(flow.claim("w2", None, limit=5, lease=LEASE)) == 1, "a dead worker's slot"

    # -- rate limits ------------------------------------------------------------------------

    def test_at_most_rate_starts_in_any_window(self, flow: FlowAdapter) -> None:
        records = flow.schedule([limited_job("api", rate="3/s") for _ in range(8)])
        first = flow.claim("w1", None, limit=10, lease=LEASE)
        assert len(first) == 3
        for job in first:  # finished runs still count: the limit is on starts
            assert flow.complete(job.id, job.lock_token or "")
        assert flow.claim("w1", None, limit=10, lease=LEASE) == []
        time.sleep(1.15)
        assert len(flow.claim("w1", None, limit=10, lease=LEASE)) == 3
        held = [flow.get(r.id) for r in records]
        assert sorted(job.attempts for job in held if job is not None) == [0, 0, 1, 1, 1]

    def test_rate_and_concurrency_together(self, flow: FlowAdapter) -> None:
        flow.schedule([limited_job("both", max_concurrency=1, rate="10/s") for _ in range(3)])
        first = flow.claim("w1", None, limit=10, lease=LEASE)
        assert len(first) == 1
        assert flow.complete(first[0].id, first[0].lock_token or "")
        assert len(flow.claim("w1", None, limit=10, lease=LEASE)) == 1
