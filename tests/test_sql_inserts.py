"""The SQL base's insert plan, driven without a database: the steps it asks for and what it
makes of their rows (unique keys held, holders that end in between, batches)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from queuebox.backends.base import JobRecord, JobState, NewJob, Row
from queuebox.backends.sql.inserts import (
    UNIQUE_ROUNDS,
    arun_plan,
    fresh_record,
    insert_plan,
    one_write,
    run_plan,
)
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
            if "queue" in params:  # batch=1: scalars
                keys = [(params["queue"], params["unique_key"])]
            else:
                keys = list(zip(params["queues"], params["unique_keys"], strict=True))
            return [
                _row(self.held[key], new_job(key[0], unique_key=key[1], name="Holder"))
                for key in keys
                if key in self.held
            ]
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


def _fresh(job: NewJob, row: Row) -> JobRecord:
    return fresh_record(job, row, lambda value: value, keeps_limits=False)


def _fresh_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a fresh insert returns: the store's columns only, in reverse order (RETURNING
    promises none)."""
    columns = ("id", "queue", "unique_key", "run_at", "created_at")
    return [
        {"run_at": _WHEN, "created_at": _WHEN} | {k: row[k] for k in columns if k in row}
        for row in reversed(rows)
    ]


def test_a_fresh_insert_builds_records_from_the_jobs_in_input_order() -> None:
    store = FakeStore({("a", "held"): 7})
    jobs = [
        new_job("a", args=[0]),
        new_job("a", args=[1], unique_key="k"),
        new_job("a", args=[2], unique_key="held"),
        new_job("b", args=[3]),
    ]

    def execute(name: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows = store.execute(name, params)
        return rows if name == "unique_holders" else _fresh_rows(rows)

    plan = insert_plan(jobs, batch=10, job_params=_params, records=_records, fresh=_fresh)
    stored = run_plan(plan, execute)
    assert [(s.record.id, s.stored) for s in stored] == [
        ("101", True),
        ("102", True),
        ("7", False),
        ("103", True),
    ]
    assert [s.record.handler for s in stored if s.stored] == [jobs[i].handler for i in (0, 1, 3)]
    assert stored[1].record.unique_key == "k" and stored[3].record.queue == "b"


def test_lone_sends_a_batch_of_one_to_the_one_row_statements() -> None:
    store = FakeStore({("q", "k"): 7})
    jobs = [new_job("q", unique_key="k")]
    plan = insert_plan(jobs, batch=10, job_params=_params, records=_records, lone=True)
    run_plan(plan, store.execute)
    assert store.steps == ["insert_unique_job", "unique_holders"]
    store.steps.clear()
    plan = insert_plan(
        [new_job(), new_job()], batch=10, job_params=_params, records=_records, lone=True
    )
    run_plan(plan, store.execute)
    assert store.steps == ["insert_jobs"]


def test_one_write_is_one_statement_or_a_lone_job() -> None:
    assert one_write([new_job(unique_key="k")], 1)
    assert one_write([new_job(), new_job()], 2)
    assert not one_write([new_job(), new_job()], 1)  # two statements
    assert not one_write([new_job(unique_key="k"), new_job()], 10)  # may insert twice


def test_a_fresh_record_is_ready_unless_it_runs_after_its_insert() -> None:
    job = new_job("q", 7, unique_key="k")
    row = {"id": 5, "run_at": _WHEN, "created_at": _WHEN}
    record = fresh_record(job, row, lambda value: value, keeps_limits=False)
    assert (record.id, record.state, record.attempts, record.priority) == (
        "5",
        JobState.READY,
        0,
        7,
    )
    assert record.updated_at == record.created_at == _WHEN and record.unique_key == "k"
    later = {**row, "run_at": _WHEN.replace(year=2031)}
    assert fresh_record(job, later, lambda v: v, keeps_limits=False).state is JobState.SCHEDULED


def test_a_fresh_record_keeps_the_limit_key_only_where_the_store_does() -> None:
    job = NewJob(name="J", handler="{}", queue="q", priority=50, limit_key="tenant")
    row = {"id": 5, "run_at": _WHEN, "created_at": _WHEN}
    assert fresh_record(job, row, lambda v: v, keeps_limits=True).limit_key == "tenant"
    assert fresh_record(job, row, lambda v: v, keeps_limits=False).limit_key is None


def test_job_record_builds_exactly_what_jobrecord_builds() -> None:
    """The fast builder of the claim and insert paths takes every field of JobRecord, by
    the same names, and gives an equal, equally hashed, frozen record (a field added to
    JobRecord and not to job_record fails here)."""
    import dataclasses
    import inspect

    from queuebox.backends.records import job_record

    names = [field.name for field in dataclasses.fields(JobRecord)]
    assert list(inspect.signature(job_record).parameters) == names
    values: dict[str, Any] = {name: f"v-{name}" for name in names}
    values |= {"priority": 3, "attempts": 2, "state": JobState.RUNNING, "run_at": _WHEN}
    fast, slow = job_record(**values), JobRecord(**values)
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert [getattr(fast, name) for name in names] == [getattr(slow, name) for name in names]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.id = "other"  # type: ignore[misc]
    minimal = {name: values[name] for name in names[:10]}
    assert job_record(**minimal) == JobRecord(**minimal)


def test_batches_end_at_their_job_count_or_their_payload_text() -> None:
    from queuebox.backends.records import BATCH_TEXT, batch_bounds

    small = new_job("q")
    assert batch_bounds([], 3) == []
    assert batch_bounds([small] * 7, 3) == [(0, 3), (3, 6), (6, 7)]
    third = NewJob(name="J", handler="x" * (BATCH_TEXT // 3), queue="q", priority=50)
    huge = NewJob(name="J", handler="x" * (BATCH_TEXT + 1), queue="q", priority=50)
    # Three thirds fill a statement (the next job would pass the bound); a job above the
    # bound alone goes alone, and small ones follow it in a new statement.
    jobs = [third, third, third, third, huge, small, small]
    assert batch_bounds(jobs, 100) == [(0, 3), (3, 4), (4, 5), (5, 7)]


def test_a_plan_splits_a_batch_of_large_payloads_into_statements() -> None:
    from queuebox.backends.records import BATCH_TEXT

    big = [
        NewJob(name="J", handler=f'["{index}{"x" * (BATCH_TEXT // 4)}"]', queue="q", priority=50)
        for index in range(10)
    ]
    store = FakeStore({})
    stored = run_plan(
        insert_plan(big, batch=1000, job_params=_params, records=_records), store.execute
    )
    assert store.steps == ["insert_jobs"] * 4  # 3 + 3 + 3 + 1 jobs: under the bound each
    assert [s.record.id for s in stored] == [str(101 + index) for index in range(10)]
    assert one_write(big, 1000) is False and one_write(big[:3], 1000) is True
