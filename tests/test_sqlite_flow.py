"""Flow control on SQLite beyond the contract: the schema upgrade that adds it, and the cost
of jobs held back by a full limit to the claim."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from queuebox.backends.base import FlowControl
from queuebox.backends.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteAdapter
from queuebox.testing.flow import limited_job
from queuebox.testing.support import new_job

LEASE = 60.0


class _SQLiteV2(SQLiteAdapter):
    """The schema as it was before flow control (cancellation was its version 2)."""

    migrations: ClassVar[tuple[str, ...]] = ("migrate_v1", "migrate_v2")


def test_a_version_2_database_upgrades_in_place(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    old = _SQLiteV2(db)
    try:
        old.migrate()  # the version 2 tables, as a queuebox before flow control made them
    finally:
        old.close()
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 2
        columns = {row[1] for row in connection.execute("PRAGMA table_info(queuebox_jobs)")}
        assert "limit_key" not in columns and "cancelled_at" in columns
        insert = (
            "INSERT INTO queuebox_jobs (name, handler, queue, priority, run_at, created_at,"
            " updated_at, locked_at, locked_by, lock_expires_at, lock_token)"
            " VALUES ('j', 'tests:j', 'q', ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        now = int(time.time() * 1_000_000)
        connection.execute(insert, (50, now, now, now, None, None, None, None))
        far = now + 3_600_000_000
        connection.execute(insert, (10, now, now, now, now, "w0", far, "t.2"))
    running_id, running_token, waiting_id = "2", "t.2", "1"

    new = SQLiteAdapter(db)
    try:
        new.migrate()
        assert isinstance(new, FlowControl)
        with sqlite3.connect(db) as connection:
            assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        # The old jobs are all there, and the running one still holds its lock.
        still = new.get(running_id)
        assert still is not None and still.locked_by == "w0" and still.limit_key is None
        assert [job.id for job in new.claim("w1", None, limit=5, lease=LEASE)] == [waiting_id]
        assert new.complete(running_id, running_token)
        assert new.pause("q") is True
        new.schedule([limited_job("k", queue="l", max_concurrency=1) for _ in range(3)])
        assert new.claim("w1", ["q"], limit=5, lease=LEASE) == []
        assert len(new.claim("w1", ["l"], limit=5, lease=LEASE)) == 1
        assert new.paused_queues() == {"q"}
    finally:
        new.close()


class _SQLiteV4(SQLiteAdapter):
    """The schema before the index of every waiting job was dropped."""

    migrations: ClassVar[tuple[str, ...]] = MIGRATIONS[:4]


def _indexes(db: Path) -> set[str]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        return {name for (name,) in rows}


def test_a_version_4_database_loses_the_index_that_repeated_two_others(tmp_path: Path) -> None:
    """Version 5 drops queuebox_jobs_waiting: queuebox_jobs_free and queuebox_jobs_keyed hold
    every waiting job between them, and the claims find every queue through those two, a
    queue with only keyed jobs too."""
    db = tmp_path / "old.db"
    old = _SQLiteV4(db)
    try:
        free = old.schedule_one(new_job("free"))
        keyed = old.schedule_one(limited_job("k", queue="keyed-only", max_concurrency=1))
    finally:
        old.close()
    assert "queuebox_jobs_waiting" in _indexes(db)
    new = SQLiteAdapter(db)
    try:
        new.migrate()
        assert "queuebox_jobs_waiting" not in _indexes(db)
        assert {"queuebox_jobs_free", "queuebox_jobs_keyed"} <= _indexes(db)
        claimed = new.claim("w", None, limit=5, lease=LEASE)
        assert sorted(job.id for job in claimed) == sorted([free.id, keyed.id])
    finally:
        new.close()


def _waits(store: SQLiteAdapter, timeout: float) -> float:
    started = time.monotonic()
    store.wait_for_work(None, timeout)
    return time.monotonic() - started


def test_every_queue_is_found_without_naming_it(tmp_path: Path) -> None:
    """Without a queue list, the claim and the wait list the queues from the free and the
    keyed index: queues with free jobs only, keyed jobs only, both, and a paused one."""
    store = SQLiteAdapter(tmp_path / "jobs.db")
    try:
        store.schedule_one(limited_job("k", queue="b", max_concurrency=5))
        assert _waits(store, 5.0) < 1.0, "a queue with one keyed job is due at once"
        store.schedule([new_job("a"), new_job("c"), new_job("e")])
        store.schedule([limited_job("k", queue=queue, max_concurrency=5) for queue in "cd"])
        store.pause("e")
        store.schedule_one(new_job("f", run_at=store.now() + timedelta(hours=1)))
        claimed = store.claim("w", None, limit=10, lease=LEASE)
        assert sorted(job.queue for job in claimed) == ["a", "b", "c", "c", "d"]
        assert _waits(store, 0.3) >= 0.3, "only the paused queue and a later job are left"
    finally:
        store.close()


@pytest.fixture
def adapter(tmp_path: Path) -> Iterator[SQLiteAdapter]:
    store = SQLiteAdapter(tmp_path / "jobs.db")
    try:
        yield store
    finally:
        store.close()


def _claim_steps(store: SQLiteAdapter) -> int:
    """SQLite virtual-machine steps (in hundreds) of one claim of one job, and its ack."""
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    connections: Any = store._connections
    with connections.use() as connection:
        connection.set_progress_handler(tick, 100)
        try:
            [job] = store.claim("w", None, limit=1, lease=LEASE)
        finally:
            connection.set_progress_handler(None, 100)
    assert job.limit_key is None
    assert store.complete(job.id, job.lock_token or "")
    return steps[0]


def test_held_back_jobs_are_not_walked_by_the_claim(tmp_path: Path) -> None:
    """10,000 jobs of a key at its limit, ahead of free jobs (better priority), cost the
    claim about what no held jobs cost: it never reads them one by one."""
    plain = SQLiteAdapter(tmp_path / "plain.db")
    held = SQLiteAdapter(tmp_path / "held.db")
    try:
        held.schedule([limited_job("full", priority=1, max_concurrency=1) for _ in range(10_000)])
        [running] = held.claim("w", None, limit=1, lease=LEASE)
        assert running.limit_key == "full"
        for store in (plain, held):
            store.schedule([new_job(priority=99) for _ in range(50)])
        baseline = sorted(_claim_steps(plain) for _ in range(20))[10]
        with_held = sorted(_claim_steps(held) for _ in range(20))[10]
        # Walking 10,000 rows would take hundreds of thousands of steps; a bounded claim a
        # few more than the plain one (the key's seeks and its live-lock count).
        assert with_held <= 3 * baseline + 20, (baseline, with_held)
    finally:
        plain.close()
        held.close()


def test_rate_limited_starts_are_pruned(adapter: SQLiteAdapter) -> None:
    """The table of starts holds a key's starts within its window only."""
    adapter.schedule([limited_job("api", rate="2/s") for _ in range(6)])
    for _ in range(3):
        claimed = adapter.claim("w", None, limit=10, lease=LEASE)
        assert len(claimed) == 2
        for job in claimed:
            assert adapter.complete(job.id, job.lock_token or "")
        time.sleep(1.05)
    with sqlite3.connect(adapter.path) as connection:
        [(count,)] = connection.execute("SELECT COUNT(*) FROM queuebox_starts").fetchall()
    assert count == 2


def test_a_paused_queue_is_not_due_for_an_idle_worker(adapter: SQLiteAdapter) -> None:
    """wait_for_work does not return at once for the due jobs of a paused queue (else an
    idle worker would spin), nor for jobs of a key at its limit."""
    adapter.schedule_one(new_job("p"))
    adapter.pause("p")
    adapter.schedule([limited_job("k", queue="l", max_concurrency=1) for _ in range(2)])
    assert len(adapter.claim("w", ["l"], limit=5, lease=LEASE)) == 1
    started = time.monotonic()
    adapter.wait_for_work(["p", "l"], 0.3)
    assert time.monotonic() - started >= 0.25


def test_limited_and_free_jobs_of_one_priority(adapter: SQLiteAdapter) -> None:
    """Jobs with a key at the priority of free ones still keep their limit."""
    limited = adapter.schedule([limited_job("k", max_concurrency=2) for _ in range(5)])
    free = adapter.schedule([new_job() for _ in range(5)])
    claimed = adapter.claim("w", None, limit=20, lease=LEASE)
    ids = {job.id for job in claimed}
    assert len(ids & {job.id for job in limited}) == 2
    assert {job.id for job in free} <= ids
