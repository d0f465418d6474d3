"""Flow control on PostgreSQL beyond the contract: the upgrade of a version 3 database,
concurrent claims racing for a key's last slot (real connections), a key another claim holds
being skipped rather than waited for, what 10,000 held-back jobs cost the claim, and waiting
that neither spins on a paused queue nor on a key at its limit. Each test gets a fresh
schema, dropped afterwards."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import psycopg
import pytest
from helpers import claim_plans, plan_nodes, statement_plans
from psycopg import sql

from queuebox.backends.base import FlowControl, JobRecord
from queuebox.backends.postgres import MIGRATIONS, SCHEMA_VERSION, PostgresAdapter
from queuebox.backends.postgres_support import function_body
from queuebox.backends.sql.extras import SQLPipelinedClaims
from queuebox.testing.flow import limited_job
from queuebox.testing.support import new_job

pytestmark = pytest.mark.postgres

LEASE = 60.0
#: The digests of the claim functions migrate_v6 and migrate_v7 create (see the test that
#: reads them).
FUNCTION_DIGESTS = {"migrate_v6": "3961de2ececb6607", "migrate_v7": "c87dc2e672bb6a7a"}


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


def test_a_version_5_database_upgrades_in_place(
    pg_url: str, admin: psycopg.Connection[Any], pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 6 adds the claim function to a database that jobs of version 5 are in; a
    claim in flight (a live lock of a key) keeps its slot across the upgrade."""
    with monkeypatch.context() as patch:  # the schema before the claim function
        patch.setattr(PostgresAdapter, "migrations", MIGRATIONS[:5])
        with closing(PostgresAdapter(pg_url)) as old:
            keyed = old.schedule([limited_job("k", queue="l", max_concurrency=1) for _ in "abc"])
            old.schedule_one(new_job("q", priority=90))
    # A job of the key that a claim of version 5 holds (its claim is the same SQL).
    admin.execute(
        sql.SQL(
            "UPDATE {} SET locked_at = now(), locked_by = 'w0', lock_token = 't.1',"
            " lock_expires_at = now() + interval '1 hour', attempts = 1 WHERE id = %s"
        ).format(sql.Identifier(pg_schema, "queuebox_jobs")),
        [int(keyed[0].id)],
    )
    function = f"{pg_schema}.queuebox_jobs_claim_limited"
    assert admin.execute("SELECT to_regproc(%s)", [function]).fetchone() == (None,)
    with closing(PostgresAdapter(pg_url)) as new:
        new.migrate()
        versions = admin.execute(
            sql.SQL("SELECT max(version) FROM {}").format(
                sql.Identifier(pg_schema, "queuebox_jobs_migrations")
            )
        ).fetchone()
        assert versions == (SCHEMA_VERSION,)
        assert admin.execute("SELECT to_regproc(%s) IS NOT NULL", [function]).fetchone() == (True,)
        claimed = new.claim("w1", ["l", "q"], limit=5, lease=LEASE)
        assert [job.queue for job in claimed] == ["q"], "the key's one slot is still taken"
        assert new.complete(keyed[0].id, "t.1")
        [next_keyed] = new.claim("w1", ["l", "q"], limit=5, lease=LEASE)
        assert next_keyed.id == keyed[1].id
        new.migrate()  # idempotent after the upgrade too


@pytest.mark.parametrize("migration", sorted(FUNCTION_DIGESTS))
def test_a_claim_function_is_replaced_by_a_migration_when_its_fragments_change(
    adapter: PostgresAdapter, migration: str
) -> None:
    """migrate_v6 builds the limited claim function from lock_keys and keyed_claim,
    migrate_v7 the plain one from free_due, not_paused, keyed, plain_claim_end and
    claim_set: a database created before a change to them keeps the old body. Changing
    them therefore needs a migration that replaces the function (then update this digest to
    that migration's text); their comments are not counted."""
    body = function_body(adapter._texts[migration])
    code = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("--"))
    digest = hashlib.sha256(code.encode()).hexdigest()[:16]
    assert digest == FUNCTION_DIGESTS[migration], (
        f"{migration}'s function changed (digest {digest}): add a migration that runs"
        f" CREATE OR REPLACE FUNCTION with the new body, instead of editing {migration}"
    )


def test_a_version_6_database_upgrades_in_place(
    pg_url: str, admin: psycopg.Connection[Any], pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 7 adds the plain claim function to a database that jobs of version 6 are in:
    a job a claim of version 6 holds stays held, and the others are claimed through it."""
    with monkeypatch.context() as patch:  # the schema before the plain claim function
        patch.setattr(PostgresAdapter, "migrations", MIGRATIONS[:6])
        with closing(PostgresAdapter(pg_url)) as old:
            first, second = old.schedule([new_job("q", priority=1), new_job("q", priority=2)])
    # The best job as a claim of version 6 holds it (its claim wrote the same columns).
    admin.execute(
        sql.SQL(
            "UPDATE {} SET locked_at = now(), locked_by = 'w0', lock_token = 't.1',"
            " lock_expires_at = now() + interval '1 hour', attempts = 1 WHERE id = %s"
        ).format(sql.Identifier(pg_schema, "queuebox_jobs")),
        [int(first.id)],
    )
    function = f"{pg_schema}.queuebox_jobs_claim"
    assert admin.execute("SELECT to_regproc(%s)", [function]).fetchone() == (None,)
    with closing(PostgresAdapter(pg_url)) as new:
        new.migrate()
        assert admin.execute("SELECT to_regproc(%s) IS NOT NULL", [function]).fetchone() == (True,)
        assert [job.id for job in new.claim("w1", ["q"], limit=5, lease=LEASE)] == [second.id]
        assert new.complete(first.id, "t.1")
        new.migrate()  # idempotent after the upgrade too


def test_the_function_counts_after_its_key_locks(
    adapter: PostgresAdapter, admin: psycopg.Connection[Any], postgres_url: str, pg_schema: str
) -> None:
    """The claim function counts a key's running jobs on a snapshot taken after it got the
    key's lock. Here a call's statement starts (and sleeps in an argument) while another
    transaction holds the key's lock and has just locked one of its jobs; that transaction
    commits; then the call gets the key's lock, and must see the job running and take
    nothing (max_concurrency=1). On the calling statement's snapshot (REPEATABLE READ
    shows what that would do) it takes the key's other job: the test can tell."""
    jobs = sql.Identifier(pg_schema, "queuebox_jobs")
    call = sql.SQL(
        "SELECT (claim.out_job).id FROM {}('w2', NULL, (SELECT 5 FROM pg_sleep(0.6)), 60, 'n')"
        " AS claim"
    ).format(sql.Identifier(pg_schema, "queuebox_jobs_claim_limited"))
    lock_key = (
        "SELECT pg_advisory_xact_lock(hashtextextended("
        "%s || ':' || length(%s) || ':' || %s || %s, 0))"
    )
    take = sql.SQL(
        "UPDATE {} SET locked_at = now(), locked_by = 'w1', lock_token = 't',"
        " lock_expires_at = now() + interval '1 hour', attempts = 1 WHERE id = %s"
    ).format(jobs)

    def late_claim(isolation: str) -> list[str]:
        adapter.clear()
        best = adapter.schedule_one(limited_job("k", priority=1, max_concurrency=1))
        other = adapter.schedule_one(limited_job("k", priority=90, max_concurrency=1))
        with psycopg.connect(postgres_url) as first, psycopg.connect(postgres_url) as late:
            space = f"queuebox.limit:{pg_schema}.queuebox_jobs"
            first.execute(lock_key, [space, "default", "default", "k"])
            first.execute(take, [int(other.id)])  # as a claim holding the key would
            late.execute(sql.SQL(f"SET TRANSACTION ISOLATION LEVEL {isolation}"))
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                result = pool.submit(lambda: late.execute(call).fetchall())
                _wait_until_sleeping(admin, late.info.backend_pid)  # its snapshot is taken
                first.commit()
                rows = result.result(10)
            late.rollback()
        taken = [str(job_id) for (job_id,) in rows if job_id is not None]
        assert set(taken) <= {best.id}
        return taken

    assert late_claim("READ COMMITTED") == [], "the count missed a claim that committed"
    assert len(late_claim("REPEATABLE READ")) == 1, "the test cannot tell a stale count"


def _wait_until_sleeping(admin: psycopg.Connection[Any], pid: int) -> None:
    deadline = time.monotonic() + 10
    query = "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event = 'PgSleep'"
    while not admin.execute(query, [pid]).fetchone():
        assert time.monotonic() < deadline, "the late claim never started"
        time.sleep(0.01)


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


def _insert_free_jobs(admin: psycopg.Connection[Any], schema: str, count: int) -> sql.Identifier:
    """``count`` due jobs of queue ``bench`` written straight into the table (no key, no
    statistics refreshed); the table's identifier."""
    jobs = sql.Identifier(schema, "queuebox_jobs")
    admin.execute(
        sql.SQL(
            "INSERT INTO {} (name, handler, queue, priority, run_at)"
            " SELECT 'J', '{{}}', 'bench', 50, now() FROM generate_series(1, %s)"
        ).format(jobs),
        (count,),
    )
    return jobs


@pytest.mark.parametrize("queues", [None, ["bench"]])
def test_the_claim_walks_its_index_when_the_table_holds_one_queue(
    adapter: PostgresAdapter, admin: psycopg.Connection[Any], pg_schema: str, queues: Any
) -> None:
    """The paused-queue filter must not look selective to the planner: estimated alone, it
    kept no row of a table with one queue, and the claim sorted every due job."""
    adapter.migrate()
    jobs = _insert_free_jobs(admin, pg_schema, 10_000)
    admin.execute(sql.SQL("ANALYZE {}").format(jobs))
    values = {"worker_id": "w", "queues": queues, "limit": 1, "lease": 60.0, "nonce": "n"}
    [plain] = claim_plans(admin, adapter.query("claim"), values)
    walk = _candidates_walk(plain)
    assert not any(node["Node Type"] in {"Sort", "Seq Scan"} for node in walk), walk
    assert any(node.get("Index Name", "").startswith("queuebox_jobs_") for node in walk), walk
    explain = sql.SQL("EXPLAIN (FORMAT TEXT, COSTS OFF) ") + adapter.query("claim_held_keys")
    plan = "\n".join(row[0] for row in admin.execute(explain, values))
    walk_text = plan.split("CTE free_taken", 1)[1].split("CTE keyed_taken", 1)[0]
    assert "Sort" not in walk_text and "Seq Scan on queuebox_jobs " not in walk_text, plan
    assert "Index Scan using queuebox_jobs_" in walk_text, plan


def _candidates_walk(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The nodes of the plain claim's CTE "candidates" (not its one-time subqueries)."""
    [cte] = [node for node in plan["Plans"] if node.get("Subplan Name") == "CTE candidates"]
    return list(plan_nodes(cte, init_plans=False))


@pytest.mark.parametrize(
    "shape",
    [
        (None, "queuebox_jobs_due_idx"),
        (["bench"], "queuebox_jobs_queue_idx"),
        (["bench", "other"], "queuebox_jobs_due_idx"),
    ],
    ids=["every-queue", "one-queue", "two-queues"],
)
@pytest.mark.parametrize("analyzed", [False, True])
def test_the_plain_claim_function_keeps_a_generic_plan_for_each_shape_of_queues(
    adapter: PostgresAdapter,
    admin: psycopg.Connection[Any],
    pg_schema: str,
    shape: tuple[list[str] | None, str],
    analyzed: bool,
) -> None:
    """migrate_v7's function has one statement for every queue, one for one queue and one
    for several, each planned once per session for any arguments (a generic plan: the
    arguments show as $n). Made while the table was nearly empty, and still after it grew
    (with and without a new ANALYZE), each walks its index in order and stops at the limit,
    without sorting the due jobs, and locks the rows it found by primary key in a nested
    loop: a generic plan cannot see the LIMIT, and estimated a tenth of the table there, so
    it merge-joined the whole primary key (20 ms per claim at 100,000 jobs) until the
    function turned merge and hash joins off."""
    queues, index = shape
    adapter.schedule_one(new_job("other"))
    values = {"worker_id": "w", "queues": queues, "limit": 10, "lease": LEASE, "nonce": "s"}
    admin.execute(adapter.query("claim"), values)  # plans made on the small table
    jobs = _insert_free_jobs(admin, pg_schema, 10_000)
    if analyzed:
        admin.execute(sql.SQL("ANALYZE {}").format(jobs))
    plans = claim_plans(admin, adapter.query("claim"), values)
    assert len(plans) == 1, "one statement of the function runs per claim"
    [plan] = plans
    assert "$2" in json.dumps(plan), "not a generic plan"
    walk = _candidates_walk(plan)
    assert not any(node["Node Type"] in {"Sort", "Seq Scan"} for node in walk), walk
    assert any(node.get("Index Name") == index for node in walk), walk
    joins = [node for node in plan_nodes(plan) if "Join" in node["Node Type"]]
    assert joins == [], joins
    loops = [node for node in plan_nodes(plan) if node["Node Type"] == "Nested Loop"]
    assert any(
        child.get("Index Name") == "queuebox_jobs_pkey" for loop in loops for child in loop["Plans"]
    ), plan


@pytest.mark.parametrize("queues", [None, ["bench"]])
def test_the_claim_function_keeps_generic_plans_that_walk_the_indexes(
    adapter: PostgresAdapter, admin: psycopg.Connection[Any], pg_schema: str, queues: Any
) -> None:
    """The function's statements run on generic plans (planned once per session, for any
    arguments), and those still walk <table>_keyed_idx per key and <table>_due_idx for the
    free jobs in order, without sorting the due jobs, and update by primary key, even when
    they were made while the table held a few rows and it has grown since (no ANALYZE
    between): a plan of a small table read it whole for each claim. auto_explain shows the
    plans the function runs, past the five calls after which PostgreSQL would otherwise
    choose."""
    adapter.schedule([limited_job("full", queue="bench", max_concurrency=1) for _ in range(50)])
    adapter.claim("holder", None, limit=1, lease=LEASE)
    values = {"worker_id": "w", "queues": queues, "limit": 10, "lease": LEASE}
    admin.execute(adapter.query("claim_limited"), {**values, "nonce": "small"})  # plans made
    _insert_free_jobs(admin, pg_schema, 10_000)
    plans = statement_plans(admin, adapter.query("claim_limited"), values)
    by_start = {plan["Query Text"].split()[0]: plan["Plan"] for plan in plans}
    lock_keys, keyed_claim = by_start["SELECT"], by_start["WITH"]
    for plan in (lock_keys, keyed_claim):
        text = json.dumps(plan)
        assert "$2 IS NULL" in text, f"not a generic plan: {text[:400]}"  # the queues argument
    assert any(
        node.get("Index Name") == "queuebox_jobs_keyed_idx" for node in plan_nodes(lock_keys)
    )
    for node in plan_nodes(keyed_claim):
        assert node.get("Relation Name") != "queuebox_jobs" or node["Node Type"] not in {
            "Seq Scan",
            "Bitmap Heap Scan",
        }, node
    ctes = {node.get("Subplan Name"): node for node in keyed_claim["Plans"]}
    claimed = list(plan_nodes(ctes["CTE claimed"]))
    assert any(node.get("Index Name") == "queuebox_jobs_pkey" for node in claimed), claimed
    free, keyed = ctes["CTE free_taken"], ctes["CTE keyed_taken"]
    for cte, index in ((free, "queuebox_jobs_due_idx"), (keyed, "queuebox_jobs_keyed_idx")):
        nodes = list(plan_nodes(cte, init_plans=False))  # not the paused-queue reads
        assert not any(node["Node Type"] in {"Sort", "Seq Scan"} for node in nodes), nodes
        assert any(node.get("Index Name") == index for node in nodes), nodes


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
