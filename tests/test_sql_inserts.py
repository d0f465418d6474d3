"""The SQL base's insert plan, driven without a database: the steps it asks for and what it
makes of their rows (unique keys held, holders that end in between, batches)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from queuebox.backends.base import JobRecord, JobState, NewJob, Row
from queuebox.backends.sql.inserts import UNIQUE_ROUNDS, arun_plan, insert_plan, run_plan
from queuebox.errors import StorageUnavailable
from queuebox.testing import new_job

_WHEN = datetime(2030, 1, 1, tzinfo=UTC)


def _row(job_id: int, job: NewJob) -> dict[str, Any]:
    return {"id": job_id, "queue": job.queue, "unique_key": job.unique_key, "name": job.name}


def _records(rows: Sequence[Row]) -> list[JobRecord]:
    return [
        JobRecord(
            id=str(row["id"]),
            name=row["name"],
            handler="{}",
            queue=row["queue"],
            priority=50,
            run_at=_WHEN,
            attempts=0,
            state=JobState.READY,
            created_at=_WHEN,
            updated_at=_WHEN,
            unique_key=row["unique_key"],
        )
        for row in rows
    ]


def _params(jobs: Sequence[NewJob]) -> dict[str, Any]:
    return {"jobs": list(jobs)}


class FakeStore:
    """Inserts unless the key is held; ``holder_ends`` makes the first holder read find
    nothing, as when the holder ended between the insert and the read."""

    def __init__(self, held: dict[tuple[str, str], int], *, holder_ends: int = 0) -> None:
        self.held, self.holder_ends, self.next_id = held, holder_ends, 100
        self.steps: list[str] = []

    def execute(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.steps.append(name)
        if name == "unique_holders":
            if self.holder_ends:
                self.holder_ends -= 1
                self.held.clear()
                return []
            key = (params["queue"], params["unique_key"])
            job = new_job(params["queue"], unique_key=params["unique_key"], name="Holder")
            return [_row(self.held[key], job)] if key in self.held else []
        rows = []
        for job in params["jobs"]:
            key = (job.queue, job.unique_key or "")
            if job.unique_key is not None and key in self.held:
                continue
            self.next_id += 1
            if job.unique_key is not None:
                self.held[key] = self.next_id
            rows.append(_row(self.next_id, job))
        return rows


def _plan(jobs: list[NewJob]) -> Any:
    return insert_plan(jobs, batch=1, job_params=_params, records=_records)


def test_a_held_key_returns_its_holder_and_a_free_one_stores() -> None:
    store = FakeStore({("q", "k"): 7})
    stored = run_plan(_plan([new_job("q", unique_key="k"), new_job("q")]), store.execute)
    assert [(s.record.id, s.stored) for s in stored] == [("7", False), ("101", True)]
    assert store.steps == ["insert_unique_jobs", "unique_holders", "insert_jobs"]


def test_a_holder_that_ends_before_it_is_read_lets_the_job_in() -> None:
    store = FakeStore({("q", "k"): 7}, holder_ends=1)
    [stored] = run_plan(_plan([new_job("q", unique_key="k")]), store.execute)
    assert (stored.record.id, stored.stored) == ("101", True)
    assert store.steps == ["insert_unique_jobs", "unique_holders", "insert_unique_jobs"]


def test_a_key_that_keeps_churning_gives_up_with_storage_unavailable() -> None:
    class Churning(FakeStore):
        def execute(self, name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
            self.steps.append(name)
            return []  # held at every insert, gone at every read

    store = Churning({})
    with pytest.raises(StorageUnavailable, match="keep ending"):
        run_plan(_plan([new_job("q", unique_key="k")]), store.execute)
    assert store.steps.count("insert_unique_jobs") == UNIQUE_ROUNDS


def test_one_batch_maps_rows_back_to_input_order_and_shares_a_key() -> None:
    jobs = [new_job("a", unique_key="k"), new_job("a"), new_job("a", unique_key="k")]
    store = FakeStore({})
    plan = insert_plan(jobs, batch=10, job_params=_params, records=_records)
    stored = run_plan(plan, store.execute)
    assert [(s.record.id, s.stored) for s in stored] == [
        ("101", True),
        ("102", True),
        ("101", False),
    ]
    assert store.steps == ["insert_unique_jobs"]


def test_the_async_runner_drives_the_same_steps() -> None:
    store = FakeStore({("q", "k"): 7})

    async def execute(name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return store.execute(name, params)

    jobs = [new_job("q", unique_key="k"), new_job("q")]
    stored = asyncio.run(arun_plan(_plan(jobs), execute))
    assert [(s.record.id, s.stored) for s in stored] == [("7", False), ("101", True)]
