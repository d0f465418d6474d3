"""The contract of ``JobSearch``: filters and cursor pages for browsing jobs."""

from __future__ import annotations

from typing import cast

import pytest

from queuebox.backends.base import Adapter, Cancellation, JobSearch, JobState
from queuebox.errors import ValidationError
from queuebox.testing.support import LEASE, StoreFixtures, claim_one, new_job
from queuebox.validation import MAX_PAGE_LIMIT

__all__ = ["JobSearchContract"]


class SearchAdapter(Adapter, JobSearch):
    """For type checking only: an adapter that declares ``JobSearch``."""


class JobSearchContract(StoreFixtures):
    @pytest.fixture
    def searchable(self, adapter: Adapter) -> SearchAdapter:
        if not isinstance(adapter, JobSearch):
            pytest.skip(f"{type(adapter).__name__} does not declare JobSearch")
        return cast(SearchAdapter, adapter)

    def test_pages_follow_the_cursor_newest_first(self, searchable: SearchAdapter) -> None:
        records = [searchable.schedule_one(new_job(args=[n])) for n in range(7)]
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            page = searchable.search_jobs(limit=3, cursor=cursor)
            assert len(page.jobs) <= 3
            seen += [job.id for job in page.jobs]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == [record.id for record in reversed(records)]

    @pytest.mark.parametrize("limit", [0, -1, MAX_PAGE_LIMIT + 1, 2.5, "10", True])
    def test_a_bad_page_size_is_refused(self, searchable: SearchAdapter, limit: object) -> None:
        with pytest.raises(ValidationError, match="limit="):
            searchable.search_jobs(limit=limit)  # type: ignore[arg-type]

    def test_filters_combine(self, searchable: SearchAdapter) -> None:
        adapter = searchable
        adapter.schedule([new_job("a", name="Alpha", args=["needle"]), new_job("b", name="Alpha")])
        wanted = adapter.schedule_one(new_job("a", name="Beta", args=["the NEEDLE here"]))
        adapter.schedule_one(new_job("a", name="Beta", args=["hay"]))
        failing = adapter.schedule_one(new_job("c", name="Gamma"))
        claim_one(adapter, queues=["c"])
        running = adapter.get(failing.id)
        assert running is not None and running.state is JobState.RUNNING
        page = adapter.search_jobs(queue="a", name="Beta", text="needle")
        assert [job.id for job in page.jobs] == [wanted.id]
        assert [j.id for j in adapter.search_jobs(state=JobState.RUNNING).jobs] == [failing.id]
        assert {j.queue for j in adapter.search_jobs(name="Alpha").jobs} == {"a", "b"}
        assert adapter.search_jobs(queue="nothing").jobs == []

    def test_text_is_found_in_the_last_error(self, searchable: SearchAdapter) -> None:
        adapter = searchable
        record = adapter.schedule_one(new_job())
        adapter.schedule_one(new_job(delay=3600))
        claimed = adapter.claim("w1", None, limit=1, lease=LEASE)[0]
        assert adapter.fail(record.id, claimed.lock_token or "", error="TimeoutError: SMTP down")
        page = adapter.search_jobs(text="smtp DOWN")
        assert [job.id for job in page.jobs] == [record.id]
        assert page.jobs[0].state is JobState.FAILED
        assert [job.id for job in adapter.search_jobs(state=JobState.FAILED).jobs] == [record.id]

    def test_a_text_search_pages_through_many_rows(self, searchable: SearchAdapter) -> None:
        adapter = searchable
        adapter.schedule([new_job(args=["hay"]) for _ in range(60)])
        needle = adapter.schedule_one(new_job(args=["needle"]))
        adapter.schedule([new_job(args=["hay"]) for _ in range(60)])
        found: list[str] = []
        cursor = None
        for _ in range(200):  # short pages are allowed, as long as the cursor goes on
            page = adapter.search_jobs(text="needle", limit=5, cursor=cursor)
            found += [job.id for job in page.jobs]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert found == [needle.id]

    @pytest.mark.parametrize(
        "filters",
        [{"name": "Rare"}, {"queue": "rare"}, {"text": "rare-needle"}, {"state": JobState.FAILED}],
        ids=["name", "queue", "text", "state"],
    )
    def test_a_sparse_filter_pages_through_many_rows_with_each_call_bounded(
        self, searchable: SearchAdapter, filters: dict[str, object]
    ) -> None:
        """Any filter, not only text: a page may come short (even empty) after ``scan_limit``
        rows, with a cursor that goes on; the one match is found once, in a bounded number
        of calls (a store that answers the filter from an index may need fewer)."""
        adapter = searchable
        adapter.scan_limit = 40  # an instance's own bound: the class keeps its default
        rare = adapter.schedule_one(new_job("rare", name="Rare", args=["rare-needle"]))
        claimed = claim_one(adapter, queues=["rare"])
        assert adapter.fail(rare.id, claimed.lock_token or "", error="Boom", keep=True)
        adapter.schedule([new_job(name="Common", args=[n]) for n in range(200)])
        found: list[str] = []
        cursor = None
        calls = 0
        while calls < 200 // 40 + 3:
            calls += 1
            page = adapter.search_jobs(limit=5, cursor=cursor, **filters)  # type: ignore[arg-type]
            found += [job.id for job in page.jobs]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert cursor is None, f"the walk did not end in {calls} calls of 40 rows each"
        assert found == [rare.id]

    @pytest.mark.parametrize("scan_limit", [0, -5, 2.5, True, "100"])
    def test_a_scan_limit_below_one_row_is_refused(
        self, searchable: SearchAdapter, scan_limit: object
    ) -> None:
        """Below one row a page could never pass the rows before its cursor: every next
        cursor would be the same, and a walk (a bulk action) would never end."""
        searchable.schedule_one(new_job())
        searchable.scan_limit = scan_limit  # type: ignore[assignment]
        with pytest.raises(ValidationError, match="scan_limit="):
            searchable.search_jobs(name="Nobody")

    def test_the_smallest_scan_limit_still_walks_to_the_end(
        self, searchable: SearchAdapter
    ) -> None:
        records = [searchable.schedule_one(new_job(args=[n])) for n in range(4)]
        searchable.scan_limit = 1
        found: list[str] = []
        cursor = None
        for _ in range(20):
            page = searchable.search_jobs(name="ContractJob", limit=2, cursor=cursor)
            found += [job.id for job in page.jobs]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert found == [record.id for record in reversed(records)]

    def test_each_state_filter_finds_exactly_its_jobs_among_many(
        self, searchable: SearchAdapter
    ) -> None:
        """A store may find a state few jobs are in through an index of its own (the SQL
        stores do): what it finds must be what the state rule says, page after page."""
        adapter = searchable
        keep = adapter.capabilities.keep_completed
        by_state: dict[JobState, list[str]] = {state: [] for state in JobState}
        for round_ in range(3):
            adapter.schedule([new_job("filler", args=[round_]) for _ in range(40)])
            failed = adapter.schedule_one(new_job("q"))
            lock = claim_one(adapter, queues=["q"])
            assert adapter.fail(failed.id, lock.lock_token or "", error="Boom", keep=True)
            by_state[JobState.FAILED].append(failed.id)
            if keep:
                done = adapter.schedule_one(new_job("q"))
                lock = claim_one(adapter, queues=["q"])
                assert adapter.complete(done.id, lock.lock_token or "", keep=True)
                by_state[JobState.COMPLETED].append(done.id)
            running = adapter.schedule_one(new_job("q"))
            claim_one(adapter, queues=["q"])
            if isinstance(adapter, Cancellation):
                cancelled = adapter.schedule_one(new_job("q"))
                adapter.cancel(cancelled.id)
                by_state[JobState.CANCELLED].append(cancelled.id)
                adapter.cancel(running.id)  # asked to stop: still running until its run ends
            by_state[JobState.RUNNING].append(running.id)
        for state, expected in by_state.items():
            if state in (JobState.READY, JobState.SCHEDULED):
                continue
            found: list[str] = []
            cursor = None
            for _ in range(50):
                page = adapter.search_jobs(state=state, limit=2, cursor=cursor)
                assert all(job.state is state for job in page.jobs), (state, page.jobs)
                found += [job.id for job in page.jobs]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert found == list(reversed(expected)), state
            queued = adapter.search_jobs(state=state, queue="filler").jobs
            assert queued == [], state
