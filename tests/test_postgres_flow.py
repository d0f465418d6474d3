"""Flow control on PostgreSQL beyond the contract: the upgrade of a version 3 database,
concurrent claims racing for a key's last slot (real connections), a key another claim holds
being skipped rather than waited for, what 10,000 held-back jobs cost the claim, and waiting
that neither spins on a paused queue nor on a key at its limit. Each test gets a fresh
schema, dropped afterwards."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import psycopg
import pytest
from psycopg import sql

from queuebox.backends.base import FlowControl, JobRecord
from queuebox.backends.postgres import SCHEMA_VERSION, PostgresAdapter
from queuebox.backends.sql.extras import SQLPipelinedClaims
from queuebox.testing.flow import limited_job
from queuebox.testing.support import new_job

pytestmark = pytest.mark.postgres

LEASE = 60.0


@pytest.fixture
def adapter(pg_url: str) -> Iterator[PostgresAdapter]:
    with closing(PostgresAdapter(pg_url)) as store:
        yield store


@pytest.fixture
def admin(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        yield conn


def test_a_version_3_database_upgrades_in_place(
    pg_url: str, admin: psycopg.Connection[Any], pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:  # the schema as it was before flow control
        patch.setattr(PostgresAdapter, "migrations", ("migrate_v1", "migrate_v2", "migrate_v3"))
        with closing(PostgresAdapter(pg_url)) as old:
            old.migrate()
    jobs = sql.Identifier(pg_schema, "queuebox_jobs")
    admin.execute(
        sql.SQL(
            "INSERT INTO {} (name, handler, queue, priority, run_at, locked_at, locked_by,"
            " lock_expires_at, lock_token) VALUES"
            " ('Old', '{{}}', 'q', 50, now(), NULL, NULL, NULL, NULL),"
            " ('Old', '{{}}', 'q', 10, now(), now(), 'w0', now() + interval '1 hour', 't.2')"
        ).format(jobs)
    )
    with closing(PostgresAdapter(pg_url)) as new:
        new.migrate()
        assert isinstance(new, FlowControl)
        versions = admin.execute(
            sql.SQL("SELECT max(version) FROM {}").format(
                sql.Identifier(pg_schema, "queuebox_jobs_migrations")
            )
        ).fetchone()
        assert versions == (SCHEMA_VERSION,)
        # The old jobs are all there, and the running one still holds its lock.
        running = new.get("2")
        assert running is not None and running.locked_by == "w0" and running.limit_key is None
        assert [job.id for job in new.claim("w1", None, limit=5, lease=LEASE)] == ["1"]
        assert new.complete("2", "t.2")
        assert new.pause("q") is True
        new.schedule([limited_job("k", queue="l", max_concurrency=1) for _ in range(3)])
        assert new.claim("w1", ["q", "l"], limit=5, lease=LEASE) != []
        assert new.claim("w1", ["q", "l"], limit=5, lease=LEASE) == []
        assert new.paused_queues() == {"q"}
        new.migrate()  # idempotent after the upgrade too


def test_one_limited_job_is_stored_with_its_limits(adapter: PostgresAdapter) -> None:
    """Every insert statement carries the limit columns: a job stored without its key would
    run unlimited."""
    one = adapter.schedule_one(limited_job("k", max_concurrency=1, rate="5/s"))
    many = adapter.schedule([limited_job("k", max_concurrency=1) for _ in range(3)])
    assert one.limit_key == "k" and all(record.limit_key == "k" for record in many)
    assert len(adapter.claim("w", None, limit=10, lease=LEASE)) == 1


def _race(pg_url: str, *, claimers: int, rounds: int) -> list[int]:
    """Jobs of one key with max_concurrency=1 (and free jobs beside them): in each round,
    ``claimers`` connections claim at the same instant while the slot is free, then the
    winner (if any) completes. How many keyed jobs each round handed out."""
    stores = [PostgresAdapter(pg_url) for _ in range(claimers)]
    try:
        stores[0].schedule([limited_job("last", max_concurrency=1) for _ in range(rounds)])
        stores[0].schedule([new_job(priority=90) for _ in range(claimers * rounds)])
        for store in stores:  # connect and warm up before the first round
            store.paused_queues()
        start = threading.Barrier(claimers)
        got: list[list[JobRecord]] = [[] for _ in range(claimers)]
        won: list[int] = []

        def claim(index: int) -> None:
            start.wait(10)
            got[index] = stores[index].claim(f"w{index}", None, limit=2, lease=LEASE)

        for _ in range(rounds):
            threads = [threading.Thread(target=claim, args=(i,)) for i in range(claimers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            keyed = [job for jobs in got for job in jobs if job.limit_key == "last"]
            won.append(len(keyed))
            for jobs in got:
                for job in jobs:
                    assert stores[0].complete(job.id, job.lock_token or "")
        return won
    finally:
        for store in stores:
            store.close()


def test_concurrent_claims_never_both_take_the_last_slot(pg_url: str) -> None:
    won = _race(pg_url, claimers=6, rounds=30)
    assert max(won) == 1, f"two claims took the key's one slot: {won}"
    # The slot is free at the start of each round and one claim holds the key's lock: that
    # claim takes it, whoever it is.
    assert sum(won) >= 25, won


def test_a_key_another_claim_holds_is_skipped_not_waited_for(
    adapter: PostgresAdapter, postgres_url: str, pg_schema: str
) -> None:
    keyed = adapter.schedule([limited_job("held", priority=1, max_concurrency=5)])
    free = adapter.schedule_one(new_job(priority=90))
    adapter.claim("w0", ["other"], limit=1, lease=LEASE)  # connect, migrate
    qualified = f"{pg_schema}.queuebox_jobs"
    lock = (
        "SELECT pg_advisory_xact_lock(hashtextextended("
        "%s || ':' || length(%s) || ':' || %s || %s, 0))"
    )
    with psycopg.connect(postgres_url) as other:  # a claim in the middle of its transaction
        other.execute(lock, [f"queuebox.limit:{qualified}", "default", "default", "held"])
        started = time.monotonic()
        claimed = adapter.claim("w1", None, limit=5, lease=LEASE)
        assert time.monotonic() - started < 2, "the claim waited for the other one"
        assert [job.id for job in claimed] == [free.id]
        other.rollback()
    assert [job.id for job in adapter.claim("w1", None, limit=5, lease=LEASE)] == [keyed[0].id]


def _claim_buffers(adapter: PostgresAdapter, conn: psycopg.Connection[Any]) -> int:
    """Shared buffers one claim of one job reads (EXPLAIN ANALYZE, rolled back)."""
    params: dict[str, Any] = {
        "worker_id": "w",
        "queues": None,
        "limit": 1,
        "lease": LEASE,
        "nonce": "n",
    }
    with conn.transaction(force_rollback=True):
        conn.execute(adapter.query("lock_limit_keys"), params)  # as claim_limited does
        explain = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + adapter.query(
            "claim_held_keys"
        )
        row = conn.execute(explain, params).fetchone()
    assert row is not None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    top = plan[0]["Plan"]
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])


def test_held_back_jobs_are_not_walked_by_the_claim(
    pg_url: str, postgres_url: str, pg_schema: str
) -> None:
    """10,000 jobs of a key at its limit, ahead of free jobs (better priority), cost the
    claim a few index pages more than none: it never reads them one by one."""
    with closing(PostgresAdapter(pg_url)) as plain, closing(PostgresAdapter(pg_url)) as held:
        plain.schedule([limited_job("empty", queue="other", max_concurrency=1)])
        [one] = plain.claim("w", ["other"], limit=1, lease=LEASE)  # a key with no room
        plain.schedule([new_job(priority=99) for _ in range(50)])
        with psycopg.connect(f"{postgres_url}", options=f"-c search_path={pg_schema}") as conn:
            baseline = sorted(_claim_buffers(plain, conn) for _ in range(5))[2]
            held.schedule(
                [limited_job("full", priority=1, max_concurrency=1) for _ in range(10_000)]
            )
            [running] = held.claim("w", None, limit=1, lease=LEASE)
            assert running.limit_key == "full"
            conn.execute("ANALYZE queuebox_jobs")
            with_held = sorted(_claim_buffers(held, conn) for _ in range(5))[2]
        assert one.limit_key == "empty"
    # Reading 10,000 rows would touch hundreds of pages; a bounded claim a few more than
    # the plain one (the key's seeks and its live-lock count).
    assert with_held <= baseline + 40, (baseline, with_held)


def test_waiting_does_not_spin_on_a_paused_queue_or_a_full_key(adapter: PostgresAdapter) -> None:
    adapter.schedule_one(new_job("p"))
    adapter.pause("p")
    adapter.schedule([limited_job("k", queue="l", max_concurrency=1) for _ in range(2)])
    assert len(adapter.claim("w", ["l"], limit=5, lease=LEASE)) == 1
    started = time.monotonic()
    adapter.wait_for_work(["p", "l"], 0.3)
    assert time.monotonic() - started >= 0.25
    adapter.resume("p")
    started = time.monotonic()
    adapter.wait_for_work(["p", "l"], 2)
    assert time.monotonic() - started < 1, "a resumed queue's job is due"


def test_rate_limited_starts_are_pruned(
    adapter: PostgresAdapter, admin: Any, pg_schema: str
) -> None:
    adapter.schedule([limited_job("api", rate="2/s") for _ in range(6)])
    for _ in range(3):
        claimed = adapter.claim("w", None, limit=10, lease=LEASE)
        assert len(claimed) == 2
        for job in claimed:
            assert adapter.complete(job.id, job.lock_token or "")
        time.sleep(1.05)
    starts = sql.Identifier(pg_schema, "queuebox_jobs_starts")
    row = admin.execute(sql.SQL("SELECT count(*) FROM {}").format(starts)).fetchone()
    assert row == (2,)


@pytest.mark.parametrize("queues", [None, ["bench"]])
def test_the_claim_walks_its_index_when_the_table_holds_one_queue(
    adapter: PostgresAdapter, admin: psycopg.Connection[Any], pg_schema: str, queues: Any
) -> None:
    """The paused-queue filter must not look selective to the planner: estimated alone, it
    kept no row of a table with one queue, and the claim sorted every due job."""
    adapter.migrate()
    jobs = sql.Identifier(pg_schema, "queuebox_jobs")
    admin.execute(
        sql.SQL(
            "INSERT INTO {} (name, handler, queue, priority, run_at)"
            " SELECT 'J', '{{}}', 'bench', 50, now() FROM generate_series(1, 10000)"
        ).format(jobs)
    )
    admin.execute(sql.SQL("ANALYZE {}").format(jobs))
    values = {"worker_id": "w", "queues": queues, "limit": 1, "lease": 60.0, "nonce": "n"}
    walks = {
        "claim": ("CTE candidates", "->  Nested Loop"),
        "claim_held_keys": ("CTE free_taken", "CTE keyed_taken"),
    }
    for name, (begin, end) in walks.items():
        explain = sql.SQL("EXPLAIN (FORMAT TEXT, COSTS OFF) ") + adapter.query(name)
        plan = "\n".join(row[0] for row in admin.execute(explain, values))
        walk = plan.split(begin, 1)[1].split(end, 1)[0]
        assert "Sort" not in walk and "Seq Scan on queuebox_jobs " not in walk, plan
        assert "Index Scan using queuebox_jobs_" in walk, plan


def test_a_fused_claim_built_on_the_sql_base_keeps_the_limits(pg_url: str) -> None:
    """PostgreSQL declares no fused claim (autocommit makes SQLPipelinedClaims a loss); one
    built on the SQL base's claim path, as SQLPipelinedClaims is, keeps limits and pauses."""

    class Fused(PostgresAdapter, SQLPipelinedClaims):
        pass

    with closing(Fused(pg_url)) as store:
        store.schedule([limited_job("k", queue="q", max_concurrency=1) for _ in range(3)])
        _, first = store.complete_and_claim([], worker_id="w", queue="q", limit=5, lease=LEASE)
        assert len(first) == 1
        acks = [(first[0].id, first[0].lock_token or "")]
        done, again = store.complete_and_claim(acks, worker_id="w", queue="q", limit=5, lease=LEASE)
        assert done == [True] and len(again) == 1, "the slot frees with the acknowledgement"
        store.pause("q")
        acks = [(again[0].id, again[0].lock_token or "")]
        _, paused = store.complete_and_claim(acks, worker_id="w", queue="q", limit=5, lease=LEASE)
        assert paused == []
