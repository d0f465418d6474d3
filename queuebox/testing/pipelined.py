"""The contracts of ``PipelinedClaims`` and ``ClaimAhead``: each fused call behaves exactly
as the plain calls it replaces, one after the other."""

from __future__ import annotations

import threading
import time
from typing import cast

import pytest

from queuebox.backends.base import Adapter, ClaimAhead, JobState, PipelinedClaims
from queuebox.testing.support import LEASE, StoreFixtures, new_job

__all__ = ["ClaimAheadContract", "PipelinedClaimsContract"]


class PipelinedAdapter(Adapter, PipelinedClaims):
    """For type checking only: an adapter that declares ``PipelinedClaims``."""


class ClaimAheadAdapter(Adapter, ClaimAhead):
    """For type checking only: an adapter that declares ``ClaimAhead``."""


class PipelinedClaimsContract(StoreFixtures):
    @pytest.fixture
    def pipelined(self, adapter: Adapter) -> PipelinedAdapter:
        if not isinstance(adapter, PipelinedClaims):
            pytest.skip(f"{type(adapter).__name__} does not declare PipelinedClaims")
        return cast(PipelinedAdapter, adapter)

    @pytest.mark.parametrize("keep", [False, True])
    def test_complete_and_claim_is_complete_many_then_claim(
        self, pipelined: PipelinedAdapter, keep: bool
    ) -> None:
        adapter = pipelined
        if keep and not adapter.capabilities.keep_completed:
            pytest.skip("the adapter declares keep_completed=False")
        first = adapter.schedule([new_job("q", 10) for _ in range(3)])
        held = adapter.claim("w1", ["q"], limit=3, lease=LEASE)
        rest = adapter.schedule([new_job("q", 20) for _ in range(4)] + [new_job("other", 1)])
        acks = [(job.id, job.lock_token or "") for job in held]
        acks.append((held[0].id, "not-the-token"))
        results, claimed = adapter.complete_and_claim(
            acks, keep=keep, worker_id="w1", queue="q", limit=3, lease=LEASE
        )
        assert results == [True, True, True, False]
        assert [job.id for job in claimed] == [record.id for record in rest[:3]]
        assert all(job.lock_token and job.state is JobState.RUNNING for job in claimed)
        assert all(job.locked_by == "w1" and job.attempts == 1 for job in claimed)
        for record in first:
            stored = adapter.get(record.id)
            assert (stored is None) if not keep else (stored and stored.completed_at is not None)
        empty_results, nothing = adapter.complete_and_claim(
            [], keep=keep, worker_id="w1", queue="empty-queue", limit=3, lease=LEASE
        )
        assert (empty_results, nothing) == ([], [])

    def test_wait_and_claim_takes_ready_jobs_at_once(self, pipelined: PipelinedAdapter) -> None:
        record = pipelined.schedule_one(new_job("q"))
        started = time.monotonic()
        claimed = pipelined.wait_and_claim("w1", "q", limit=5, lease=LEASE, timeout=5.0)
        assert [job.id for job in claimed] == [record.id]
        assert claimed[0].lock_token and claimed[0].locked_by == "w1"
        assert time.monotonic() - started < 2.0

    def test_wait_and_claim_returns_nothing_after_the_timeout(
        self, pipelined: PipelinedAdapter
    ) -> None:
        pipelined.schedule_one(new_job("elsewhere"))
        started = time.monotonic()
        assert pipelined.wait_and_claim("w1", "q", limit=5, lease=LEASE, timeout=0.3) == []
        assert time.monotonic() - started < 3.0

    def test_wait_and_claim_wakes_on_enqueue(
        self, pipelined: PipelinedAdapter, adapter_factory: object
    ) -> None:
        adapter = pipelined
        if not adapter.capabilities.wakeup:
            pytest.skip("the adapter declares wakeup=False")
        timer = threading.Timer(0.3, lambda: adapter.schedule_one(new_job("q")))
        started = time.monotonic()
        timer.start()
        claimed = adapter.wait_and_claim("w1", "q", limit=5, lease=LEASE, timeout=10.0)
        timer.join()
        assert len(claimed) == 1 and time.monotonic() - started < 3.0


class ClaimAheadContract(StoreFixtures):
    @pytest.fixture
    def ahead(self, adapter: Adapter) -> ClaimAheadAdapter:
        if not isinstance(adapter, ClaimAhead):
            pytest.skip(f"{type(adapter).__name__} does not declare ClaimAhead")
        return cast(ClaimAheadAdapter, adapter)

    def test_send_complete_and_claim_is_complete_and_claim_in_two_halves(
        self, ahead: ClaimAheadAdapter
    ) -> None:
        adapter = ahead
        adapter.schedule([new_job("q", 10) for _ in range(2)])
        held = adapter.claim("w1", ["q"], limit=2, lease=LEASE)
        rest = adapter.schedule([new_job("q", 20) for _ in range(3)])
        acks = [(job.id, job.lock_token or "") for job in held] + [("bogus", "x")]
        receive = adapter.send_complete_and_claim(
            acks, worker_id="w1", queue="q", limit=2, lease=LEASE
        )
        results, batch = receive()
        assert results == [True, True, False]
        assert len(batch) == 2
        records = batch.records()
        assert [job.id for job in records] == [record.id for record in rest[:2]]
        assert all(job.lock_token and job.locked_by == "w1" for job in records)
        assert all(adapter.get(job.id) is None for job in held)
        # The claimed jobs are locked: nobody else gets them.
        others = adapter.claim("w2", ["q"], limit=5, lease=LEASE)
        assert [job.id for job in others] == [rest[2].id]

    def test_an_empty_claim_ahead(self, ahead: ClaimAheadAdapter) -> None:
        receive = ahead.send_complete_and_claim(
            [], worker_id="w1", queue="nothing-here", limit=5, lease=LEASE
        )
        results, batch = receive()
        assert results == [] and len(batch) == 0 and batch.records() == []
