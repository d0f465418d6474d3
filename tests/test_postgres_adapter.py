"""What the PostgreSQL store does beyond the shared contract: URL options, schema and
migrations (and the upgrade from version 1), the claim's index, wake-ups, transactional
enqueue, unique keys and recurring ticks under concurrency, and surviving dropped
connections. Each test gets a fresh schema, dropped afterwards."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import psycopg
import pytest
from helpers import claim_plans, plan_nodes
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict

from queuebox.backends import from_url
from queuebox.backends.base import JobRecord, JobState, reclaim_note
from queuebox.backends.postgres import SCHEMA_VERSION, PostgresAdapter
from queuebox.errors import ConfigurationError, PayloadError, StorageUnavailable, ValidationError
from queuebox.testing import new_job

_T = TypeVar("_T")


def _with_params(url: str, **params: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{url}{'&' if '?' in url else '?'}{query}"


@pytest.fixture
def adapter(pg_url: str) -> Iterator[PostgresAdapter]:
    with closing(PostgresAdapter(pg_url)) as adapter:
        yield adapter


@pytest.fixture
def admin(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A separate autocommit connection that plays the DBA or the application."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        yield conn


# -- no server needed -----------------------------------------------------------------------


def test_url_options_are_removed_before_libpq_sees_them() -> None:
    adapter = PostgresAdapter(
        "postgresql://app:s3cret@db.example:6432/jobs"
        "?schema=myapp&table=work&wakeup=off&sslmode=disable"
    )
    assert (adapter.schema, adapter.table, adapter.wakeup) == ("myapp", "work", False)
    assert adapter.capabilities.wakeup is False
    params = conninfo_to_dict(adapter.conninfo)
    assert not {"schema", "table", "wakeup"} & set(params)
    assert params["sslmode"] == "disable" and params["dbname"] == "jobs"
    assert params["application_name"] == "queuebox" and params["port"] == "6432"
    assert "s3cret" not in repr(adapter)


def test_keyword_arguments_win_over_url_options() -> None:
    adapter = PostgresAdapter(
        "postgres://h/db?schema=a&application_name=mine", schema="b", table="t", wakeup=True
    )
    assert (adapter.schema, adapter.table, adapter.wakeup) == ("b", "t", True)
    assert adapter.capabilities.wakeup is True
    assert conninfo_to_dict(adapter.conninfo)["application_name"] == "mine"
    default = PostgresAdapter("host=h dbname=db")
    assert (default.schema, default.table) == (None, "queuebox_jobs")


def test_from_url_maps_both_schemes(pg_url: str) -> None:
    rest = pg_url.split("://", 1)[1]
    for scheme in ("postgresql", "postgres"):
        with closing(from_url(f"{scheme}://{rest}")) as adapter:
            assert isinstance(adapter, PostgresAdapter) and adapter.schema
            assert adapter.now().tzinfo is not None


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://h/db?wakeup=maybe",
        f"postgresql://h/db?table={'t' * 49}",
        f"postgresql://h/db?schema={'s' * 64}",
        "host=h dbname=db bogus_option",
    ],
)
def test_bad_options_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        PostgresAdapter(url)


def test_unreachable_server_raises_storage_unavailable_without_the_password() -> None:
    adapter = PostgresAdapter("postgresql://app:s3cret@127.0.0.1:1/db", connect_timeout=2)
    for _ in range(2):  # the second attempt waits out a short backoff, then fails again
        with pytest.raises(StorageUnavailable) as caught:
            adapter.now()
        assert "s3cret" not in str(caught.value) and "***" in str(caught.value)
        assert caught.value.url == "postgresql://app:***@127.0.0.1:1/db"
    adapter.close()


# -- schema ---------------------------------------------------------------------------------


def test_schema_is_created_on_first_use_and_migrate_is_idempotent(
    adapter: PostgresAdapter, admin: psycopg.Connection[Any], pg_schema: str
) -> None:
    assert adapter.counts() == []  # first use creates the schema
    adapter.migrate()
    adapter.migrate()
    versions = admin.execute(
        sql.SQL("SELECT version FROM {}").format(
            sql.Identifier(pg_schema, "queuebox_jobs_migrations")
        )
    ).fetchall()
    assert versions == [(version,) for version in range(1, SCHEMA_VERSION + 1)]
    columns: dict[str, str] = dict(
        admin.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'queuebox_jobs'",
            [pg_schema],
        ).fetchall()
    )
    assert set(columns) == {
        "id", "name", "handler", "queue", "priority", "attempts", "run_at", "locked_at",
        "locked_by", "lock_expires_at", "lock_token", "last_error", "failed_at",
        "completed_at", "created_at", "updated_at", "unique_key", "cancelled_at",
        "limit_key", "max_concurrency", "rate_count", "rate_per",
    }  # fmt: skip
    assert columns["handler"] == "text" and columns["id"] == "bigint"
    assert columns["run_at"] == "timestamp with time zone"
    index = admin.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
        [pg_schema, "queuebox_jobs_due_idx"],
    ).fetchone()
    assert index is not None
    # Only jobs without a flow-control key: jobs held back by a limit are not in its way.
    partial = (
        "(priority, run_at, id) WHERE ((failed_at IS NULL) AND (completed_at IS NULL)"
        " AND (limit_key IS NULL))"
    )
    assert partial in index[0], index[0]


def test_concurrent_migrations_do_not_collide(pg_url: str, pg_schema: str) -> None:
    adapters = [PostgresAdapter(pg_url) for _ in range(6)]
    start = threading.Barrier(len(adapters))
    errors: list[BaseException] = []

    def run(adapter: PostgresAdapter) -> None:
        start.wait()
        try:
            adapter.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(adapter,)) for adapter in adapters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert adapters[0].schedule_one(new_job()).state is JobState.READY
    for adapter in adapters:
        adapter.close()


def _columns(admin: psycopg.Connection[Any], schema: str, table: str) -> set[str]:
    rows = admin.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s",
        [schema, table],
    ).fetchall()
    return {row[0] for row in rows}


def test_version_2_adds_unique_keys_and_the_recurring_table(
    adapter: PostgresAdapter, admin: psycopg.Connection[Any], pg_schema: str
) -> None:
    adapter.migrate()
    index = admin.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
        [pg_schema, "queuebox_jobs_unique_idx"],
    ).fetchone()
    assert index is not None and index[0].startswith("CREATE UNIQUE INDEX"), index
    assert "(queue, unique_key) WHERE (unique_key IS NOT NULL)" in index[0]
    assert _columns(admin, pg_schema, "queuebox_jobs_recurring") == {"key", "last_tick"}
    key = admin.execute(
        "SELECT a.attname FROM pg_index i"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = %s::regclass AND i.indisprimary",
        [f'"{pg_schema}".queuebox_jobs_recurring'],
    ).fetchall()
    assert key == [("key",)]


def test_a_version_1_database_upgrades_in_place(
    pg_url: str,
    admin: psycopg.Connection[Any],
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Build the schema exactly as the previous release did: version 1 only.
    with monkeypatch.context() as patch:
        patch.setattr(PostgresAdapter, "migrations", ("migrate_v1",))
        with closing(PostgresAdapter(pg_url)) as old:
            old.migrate()
    jobs = sql.Identifier(pg_schema, "queuebox_jobs")
    assert "unique_key" not in _columns(admin, pg_schema, "queuebox_jobs")
    assert _columns(admin, pg_schema, "queuebox_jobs_recurring") == set()
    # Jobs stored under version 1: one waiting, one running, one failed.
    admin.execute(
        sql.SQL(
            "INSERT INTO {} (name, handler, queue, priority, run_at, locked_at, locked_by,"
            " lock_expires_at, lock_token, failed_at) VALUES"
            " ('Old', '{{}}', 'q', 50, now(), NULL, NULL, NULL, NULL, NULL),"
            " ('Old', '{{}}', 'q', 50, now(), now(), 'w', now() + interval '1 hour', 't', NULL),"
            " ('Old', '{{}}', 'q', 50, now(), NULL, NULL, NULL, NULL, now())"
        ).format(jobs)
    )
    with closing(PostgresAdapter(pg_url)) as new:
        # The first call of the new code sees version 1 and upgrades.
        states = [job.state for job in new.list_jobs()]
        assert sorted(states) == sorted([JobState.READY, JobState.RUNNING, JobState.FAILED])
        assert all(job.unique_key is None for job in new.list_jobs())
        versions = admin.execute(
            sql.SQL("SELECT version FROM {} ORDER BY version").format(
                sql.Identifier(pg_schema, "queuebox_jobs_migrations")
            )
        ).fetchall()
        assert versions == [(version,) for version in range(1, SCHEMA_VERSION + 1)]
        assert "unique_key" in _columns(admin, pg_schema, "queuebox_jobs")
        first = new.schedule_one(new_job("q", unique_key="k"))
        assert new.schedule_one(new_job("q", unique_key="k")).id == first.id
        tick = new.now().replace(microsecond=0)
        assert new.schedule_tick("Nightly", tick, new_job("q")) is not None
        assert new.recurring_ticks() == {"Nightly": tick}
        new.migrate()  # idempotent after the upgrade too
        assert len(new.list_jobs()) == 5
        claimed = new.claim("w2", ["q"], limit=10, lease=60)
        assert len(claimed) == 3  # the old ready job, the unique one and the tick's run


def test_odd_schema_and_table_names_are_quoted(postgres_url: str) -> None:
    schema, table = f'qb test "{uuid.uuid4().hex[:6]}"; --', "Jobs; DROP TABLE x"
    adapter = PostgresAdapter(postgres_url, schema=schema, table=table)
    try:
        record = adapter.schedule_one(new_job("q"))
        assert adapter.get(record.id) == record
        assert [job.id for job in adapter.claim("w", ["q"], lease=5)] == [record.id]
        adapter.wait_for_work(["q"], 0.01)
    finally:
        adapter.close()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def _claim_plan(conn: psycopg.Connection[Any], adapter: PostgresAdapter) -> dict[str, Any]:
    """The plan of the statement the claim function runs (auto_explain)."""
    values = {"worker_id": "w", "queues": None, "limit": 10, "lease": 60.0, "nonce": "n"}
    [plan] = claim_plans(conn, adapter.query("claim"), values)
    return plan


def test_the_claim_walks_the_partial_index(
    adapter: PostgresAdapter, admin: psycopg.Connection[Any], pg_schema: str
) -> None:
    adapter.migrate()
    jobs = sql.Identifier(pg_schema, "queuebox_jobs")
    admin.execute(
        sql.SQL(
            "INSERT INTO {} (name, handler, queue, priority, run_at)"
            " SELECT 'J', '{{}}', 'q' || g % 4, 1 + g % 100, now() - g * interval '1 ms'"
            " FROM generate_series(1, 50000) AS g"
        ).format(jobs)
    )
    admin.execute(sql.SQL("ANALYZE {}").format(jobs))
    plan = _claim_plan(admin, adapter)
    indexes = {node.get("Index Name") for node in plan_nodes(plan)}
    assert "queuebox_jobs_due_idx" in indexes, plan
    # The table of paused queues (a few rows, read once per claim) is the only one scanned.
    scans = [node for node in plan_nodes(plan) if node["Node Type"] in {"Seq Scan", "Sort"}]
    assert scans == [], scans
    [candidates] = [node for node in plan["Plans"] if node.get("Subplan Name") == "CTE candidates"]
    assert "One-Time Filter" in json.dumps(candidates), "the check for keyed jobs runs once"
    # A backlog scheduled for later does not slow down finding the few due jobs.
    admin.execute(sql.SQL("UPDATE {} SET run_at = now() + interval '1 day'").format(jobs))
    admin.execute(sql.SQL("ANALYZE {}").format(jobs))
    plan = _claim_plan(admin, adapter)
    assert "queuebox_jobs_next_idx" in {node.get("Index Name") for node in plan_nodes(plan)}


# -- claim details --------------------------------------------------------------------------


def test_reclaim_note_matches_base(
    adapter: PostgresAdapter, admin: psycopg.Connection[Any], pg_schema: str
) -> None:
    record = adapter.schedule_one(new_job())
    lost = adapter.claim("lost-worker", None, lease=0.05)[0]
    time.sleep(0.1)
    taken = adapter.claim("w2", None, lease=0.05)[0]
    assert taken.last_error == reclaim_note("lost-worker", lost.lock_expires_at)
    # Python's isoformat() drops a zero microsecond part; so does the SQL.
    admin.execute(
        sql.SQL(
            "UPDATE {} SET lock_expires_at = date_trunc('second', now()) - interval '1 s'"
        ).format(sql.Identifier(pg_schema, "queuebox_jobs"))
    )
    expired = adapter.get(record.id)
    assert expired is not None and expired.lock_expires_at is not None
    assert expired.lock_expires_at.microsecond == 0
    again = adapter.claim("w3", None, lease=5)[0]
    assert again.last_error == reclaim_note("w2", expired.lock_expires_at)
    assert again.attempts == 3


def test_records_use_aware_utc_datetimes(adapter: PostgresAdapter) -> None:
    record = adapter.schedule_one(new_job(delay=5))
    for value in (record.run_at, record.created_at, record.updated_at, adapter.now()):
        assert value.utcoffset() == timedelta(0)


def test_bad_ids_are_unknown_and_never_raise(adapter: PostgresAdapter) -> None:
    adapter.schedule_one(new_job())
    bad = ["bogus", "", "1' OR '1'='1", "999999999", "-1", "0", "9" * 25, "\uff11", " 1", "1.0"]
    for job_id in bad:
        assert adapter.get(job_id) is None
        assert adapter.delete(job_id) is False and adapter.retry(job_id) is False
        assert adapter.complete(job_id, "t") is False
        assert adapter.reschedule(job_id, "t", delay=1, error="e") is False
        assert adapter.fail(job_id, "t", error="e") is False
        assert adapter.release(job_id, "t") is False
        assert adapter.extend(job_id, "t", lease=1) is False
    assert adapter.complete_many([(job_id, "t") for job_id in bad]) == [False] * len(bad)
    assert len(adapter.list_jobs()) == 1


def test_heartbeat_thread_extends_while_the_main_thread_works(adapter: PostgresAdapter) -> None:
    adapter.schedule([new_job() for _ in range(200)])
    long_job = adapter.claim("w", None, lease=60)[0]
    stop = threading.Event()
    failures: list[object] = []

    def heartbeat() -> None:
        while not stop.is_set():
            if not adapter.extend(long_job.id, long_job.lock_token or "", lease=60):
                failures.append("extend returned False")

    thread = threading.Thread(target=heartbeat)
    thread.start()
    try:
        while jobs := adapter.claim("w", None, limit=7, lease=60):
            assert all(adapter.complete_many([(j.id, j.lock_token or "") for j in jobs]))
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert [c.running for c in adapter.counts()] == [1]


def test_a_forked_child_opens_its_own_connection(adapter: PostgresAdapter) -> None:
    adapter.schedule_one(new_job("parent"))
    pid = os.fork()
    if pid == 0:  # the child uses the very same adapter object
        code = 1
        try:
            adapter.schedule_one(new_job("child"))
            adapter.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [c.queue for c in adapter.counts()] == ["child", "parent"]


# -- wake-ups -------------------------------------------------------------------------------


def _timed(work: Callable[[], None]) -> float:
    started = time.monotonic()
    work()
    return time.monotonic() - started


def test_wakeup_arrives_within_milliseconds(pg_url: str) -> None:
    with closing(PostgresAdapter(pg_url)) as waiter, closing(PostgresAdapter(pg_url)) as producer:
        waiter.wait_for_work(["fast"], 0.01)
        timer = threading.Timer(0.2, lambda: producer.schedule_one(new_job("fast")))
        timer.start()
        elapsed = _timed(lambda: waiter.wait_for_work(["fast"], 10))
        timer.join()
        assert 0.15 < elapsed < 1.0


def test_a_notify_for_another_queue_does_not_wake(pg_url: str) -> None:
    with closing(PostgresAdapter(pg_url)) as waiter, closing(PostgresAdapter(pg_url)) as producer:
        waiter.wait_for_work(["mine"], 0.01)
        timer = threading.Timer(0.1, lambda: producer.schedule_one(new_job("other")))
        timer.start()
        elapsed = _timed(lambda: waiter.wait_for_work(["mine"], 0.6))
        timer.join()
        assert elapsed >= 0.55


def test_wait_returns_when_a_delayed_job_falls_due(adapter: PostgresAdapter) -> None:
    adapter.schedule_one(new_job("later", delay=0.5))
    assert 0.3 < _timed(lambda: adapter.wait_for_work(["later"], 10)) < 1.5
    assert len(adapter.claim("w", ["later"], lease=60)) == 1


def test_wait_returns_when_a_lock_expires(adapter: PostgresAdapter) -> None:
    adapter.schedule_one(new_job("locked"))
    adapter.claim("w", None, lease=0.5)
    assert 0.3 < _timed(lambda: adapter.wait_for_work(["locked"], 10)) < 1.5
    assert _timed(lambda: adapter.wait_for_work(None, 10)) < 1.0  # due now: at once


def test_without_wakeup_waiting_polls_the_due_time(pg_url: str) -> None:
    with closing(PostgresAdapter(_with_params(pg_url, wakeup="off"))) as adapter:
        assert adapter.capabilities.wakeup is False
        assert 0.15 < _timed(lambda: adapter.wait_for_work(["idle"], 0.2)) < 1.0
        adapter.schedule_one(new_job("soon", delay=0.3))
        assert 0.15 < _timed(lambda: adapter.wait_for_work(["soon"], 10)) < 1.0
        assert not adapter.listening


# -- transactional enqueue ------------------------------------------------------------------


@pytest.fixture
def app_conn(postgres_url: str, pg_schema: str) -> Iterator[psycopg.Connection[Any]]:
    """The application's own connection, not autocommit, with a table of its own."""
    with psycopg.connect(postgres_url) as conn:
        yield conn


def _signups_table(admin: psycopg.Connection[Any], schema: str) -> sql.Identifier:
    table = sql.Identifier(schema, "signups")
    admin.execute(sql.SQL("CREATE TABLE {} (email text)").format(table))
    return table


def _notifications(listener: psycopg.Connection[Any], wait: float) -> list[str]:
    return [note.payload for note in listener.notifies(timeout=wait)]


def test_schedule_with_commits_with_the_callers_transaction(
    adapter: PostgresAdapter,
    admin: psycopg.Connection[Any],
    app_conn: psycopg.Connection[Any],
    pg_schema: str,
) -> None:
    adapter.migrate()
    signups = _signups_table(admin, pg_schema)
    admin.execute(sql.SQL("LISTEN {}").format(sql.Identifier(adapter.channel)))
    app_conn.execute(sql.SQL("INSERT INTO {} VALUES ('a@example.com')").format(signups))
    [record] = adapter.schedule_with(app_conn, [new_job("email", args=["a@example.com"])])
    assert record.state is JobState.READY and record.queue == "email"
    assert app_conn.info.transaction_status == pq.TransactionStatus.INTRANS
    assert adapter.get(record.id) is None, "visible before the caller committed"
    assert _notifications(admin, 0.2) == []
    app_conn.commit()
    assert adapter.get(record.id) == record
    assert _notifications(admin, 2.0) == ["email"]
    claimed = adapter.claim("w", ["email"], lease=60)
    assert [json.loads(job.handler)["args"] for job in claimed] == [["a@example.com"]]


def test_schedule_with_rolls_back_with_the_callers_transaction(
    adapter: PostgresAdapter,
    admin: psycopg.Connection[Any],
    app_conn: psycopg.Connection[Any],
    pg_schema: str,
) -> None:
    adapter.migrate()
    signups = _signups_table(admin, pg_schema)
    admin.execute(sql.SQL("LISTEN {}").format(sql.Identifier(adapter.channel)))
    records: list[JobRecord] = []

    def sign_up() -> None:
        with app_conn.transaction():
            app_conn.execute(sql.SQL("INSERT INTO {} VALUES ('b@example.com')").format(signups))
            records.extend(adapter.schedule_with(app_conn, [new_job("email"), new_job("e2")]))
            raise RuntimeError("the signup failed")

    with pytest.raises(RuntimeError):
        sign_up()
    assert len(records) == 2
    assert adapter.get(records[0].id) is None and adapter.counts() == []
    assert admin.execute(sql.SQL("SELECT count(*) FROM {}").format(signups)).fetchone() == (0,)
    assert _notifications(admin, 0.3) == []


@pytest.mark.parametrize("connection", ["postgresql://db/app", None, object()])
def test_schedule_with_refuses_what_is_not_a_psycopg_connection(
    adapter: PostgresAdapter, connection: object
) -> None:
    # A wrong object failed deep in the insert: AttributeError: 'str' object has no
    # attribute 'cursor'.
    with pytest.raises(ValidationError, match="is not a psycopg 3 connection"):
        adapter.schedule_with(connection, [new_job("email")])  # type: ignore[arg-type]
    assert adapter.counts() == []


def test_schedule_with_creates_the_schema_through_its_own_connection(
    adapter: PostgresAdapter, app_conn: psycopg.Connection[Any]
) -> None:
    [record] = adapter.schedule_with(app_conn, [new_job()])
    app_conn.rollback()
    assert adapter.get(record.id) is None and adapter.counts() == []


# -- the request path -------------------------------------------------------------------------


def _statements(adapter: PostgresAdapter, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The insert steps and transaction statements the adapter sends from now on."""
    seen: list[str] = []
    execute, step = adapter._execute, adapter._insert_step

    def spy_execute(connection: Any, name: str, params: dict[str, Any] | None = None) -> Any:
        if name in {"begin", "commit", "rollback"}:
            seen.append(name)
        return execute(connection, name, params)

    def spy_step(connection: Any, name: str, params: dict[str, Any]) -> Any:
        seen.append(name)
        return step(connection, name, params)

    monkeypatch.setattr(adapter, "_execute", spy_execute)
    monkeypatch.setattr(adapter, "_insert_step", spy_step)
    return seen


def test_one_job_is_one_statement_without_a_transaction_around_it(
    adapter: PostgresAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter.migrate()
    seen = _statements(adapter, monkeypatch)
    adapter.schedule([new_job()])
    assert seen == ["insert_job"]
    seen.clear()
    held = adapter.schedule_one(new_job(unique_key="k"))
    again = adapter.schedule_one(new_job(unique_key="k"))
    assert again.id == held.id
    assert seen == ["insert_unique_job", "insert_unique_job", "unique_holders"]


def test_a_batch_is_one_statement_unless_its_keys_may_need_another(
    adapter: PostgresAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter.migrate()
    seen = _statements(adapter, monkeypatch)
    adapter.schedule([new_job(), new_job("b")])
    assert seen == ["insert_jobs"]
    seen.clear()
    adapter.schedule([new_job(unique_key="k"), new_job()])
    assert seen == ["begin", "insert_unique_jobs", "commit"]
    seen.clear()
    adapter.schedule([new_job(args=[n]) for n in range(adapter.insert_batch + 1)])
    assert seen == ["begin", "insert_jobs", "insert_job", "commit"]  # 1,000 and the last


def test_schedule_returns_the_record_the_store_reads_back(adapter: PostgresAdapter) -> None:
    eastern = timezone(timedelta(hours=-5))
    jobs = [
        new_job("a", 10, args=[1]),
        new_job("b", delay=3600, args=["two"]),
        new_job("c", run_at=datetime(2001, 1, 1, tzinfo=UTC)),
        new_job("c", run_at=datetime(2090, 1, 1, 3, 0, 0, 123456, tzinfo=eastern)),
        new_job("d", unique_key="k"),
        new_job("é", args=["non-ASCII ✓"], unique_key="ключ"),
    ]
    for record in [adapter.schedule_one(job) for job in jobs]:
        assert adapter.get(record.id) == record
    adapter.clear()
    batch = adapter.schedule(jobs)
    for record in batch:
        assert adapter.get(record.id) == record
    states = [record.state for record in batch[:4]]
    assert states == [JobState.READY, JobState.SCHEDULED, JobState.READY, JobState.SCHEDULED]
    assert batch[3].run_at == datetime(2090, 1, 1, 8, 0, 0, 123456, tzinfo=UTC)
    assert batch[1].run_at - batch[1].created_at == timedelta(hours=1)


def test_every_enqueue_notifies_its_queues_once_and_a_held_key_none(
    adapter: PostgresAdapter, admin: psycopg.Connection[Any]
) -> None:
    adapter.migrate()
    admin.execute(sql.SQL("LISTEN {}").format(sql.Identifier(adapter.channel)))
    adapter.schedule([new_job("one")])
    adapter.schedule([new_job("two"), new_job("two"), new_job("three", delay=60)])
    adapter.schedule([new_job("four", unique_key="k")])
    adapter.schedule([new_job("four", unique_key="k")])  # held: nothing stored
    assert _notifications(admin, 0.5) == ["one", "two", "three", "four"]


def test_the_insert_text_follows_the_connections_encoding(
    postgres_url: str, admin: psycopg.Connection[Any]
) -> None:
    """The one-row insert's text is composed once per client encoding: a table named with
    a letter outside ASCII works on a UTF-8 connection and on a LATIN1 one alike."""
    schema = f"qb_test_{uuid.uuid4().hex[:12]}"
    adapter = PostgresAdapter(postgres_url, schema=schema, table="jöbs")
    try:
        mine = adapter.schedule_one(new_job("q"))
        with psycopg.connect(postgres_url, autocommit=True) as latin:
            latin.execute("SET client_encoding TO 'LATIN1'")
            [theirs] = adapter.schedule_with(latin, [new_job("q")])
        assert [adapter.get(mine.id), adapter.get(theirs.id)] == [mine, theirs]
        assert len({key[1] for key in adapter._composed}) == 2
    finally:
        adapter.close()
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def _prepared_statements(adapter: PostgresAdapter) -> list[str]:
    with adapter._session() as connection:
        rows = connection.execute("SELECT statement FROM pg_prepared_statements").fetchall()
    return [row["statement"] for row in rows]


def test_prepare_on_prepares_the_inserts_on_the_adapters_own_connections(
    pg_url: str, app_conn: psycopg.Connection[Any]
) -> None:
    with closing(PostgresAdapter(_with_params(pg_url, prepare="on"))) as adapter:
        assert adapter.prepare
        for _ in range(3):
            record = adapter.schedule_one(new_job())
            assert adapter.get(record.id) == record
        adapter.schedule([new_job(), new_job()])
        adapter.schedule_one(new_job(unique_key="k"))
        statements = _prepared_statements(adapter)
        assert len(statements) == 3  # insert_job, insert_jobs, insert_unique_job: once each
        assert all("INSERT INTO" in text and "RETURNING" in text for text in statements)
        adapter.schedule_with(app_conn, [new_job()])  # the caller's connection: its own rule
        assert app_conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)
        app_conn.rollback()

        async def enqueue() -> JobRecord:
            try:
                [record] = await adapter.aschedule([new_job()])
                return record
            finally:
                await adapter.aclose()

        record = asyncio.run(enqueue())
        assert adapter.get(record.id) == record


def test_statements_are_not_prepared_by_default(adapter: PostgresAdapter) -> None:
    assert not adapter.prepare
    for _ in range(10):
        adapter.schedule_one(new_job())
    adapter.claim("w", None, limit=10, lease=60)
    assert _prepared_statements(adapter) == []


def test_a_bad_prepare_flag_is_a_configuration_error(postgres_url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"prepare='maybe'.*prepare=on or prepare=off"):
        PostgresAdapter(_with_params(postgres_url, prepare="maybe"))


def _async_steps(adapter: PostgresAdapter, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    step = adapter._ainsert_step

    async def spy(connection: Any, name: str, params: dict[str, Any]) -> Any:
        seen.append(
            name
            if connection.info.transaction_status == pq.TransactionStatus.IDLE
            else f"{name} (in a transaction)"
        )
        return await step(connection, name, params)

    monkeypatch.setattr(adapter, "_ainsert_step", spy)
    return seen


def test_aschedule_runs_the_plan_of_schedule_on_an_async_connection(
    adapter: PostgresAdapter, admin: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter.migrate()
    admin.execute(sql.SQL("LISTEN {}").format(sql.Identifier(adapter.channel)))
    held = adapter.schedule_one(new_job("q", unique_key="k"))
    seen = _async_steps(adapter, monkeypatch)

    async def enqueue() -> list[list[JobRecord]]:
        try:
            return [
                await adapter.aschedule([new_job("q")]),
                await adapter.aschedule([new_job("q", unique_key="k")]),
                await adapter.aschedule([new_job("r"), new_job("r", delay=60)]),
                await adapter.aschedule([new_job("s", unique_key="k2"), new_job("s")]),
            ]
        finally:
            await adapter.aclose()

    [one], [same], plain, keyed = asyncio.run(enqueue())
    assert same.id == held.id
    for record in [one, *plain, *keyed]:
        assert adapter.get(record.id) == record
    assert seen == [
        "insert_job",
        "insert_unique_job",
        "unique_holders",
        "insert_jobs",
        "insert_unique_jobs (in a transaction)",
    ]
    assert _notifications(admin, 0.5) == ["q", "q", "r", "s"]  # the holder, then ours


def test_aschedule_reconnects_after_the_server_ended_its_idle_connection(
    pg_url: str, admin: psycopg.Connection[Any]
) -> None:
    name = f"qb-test-{uuid.uuid4().hex[:8]}"
    with closing(PostgresAdapter(_with_params(pg_url, application_name=name))) as adapter:

        async def enqueue() -> list[JobRecord]:
            try:
                first = await adapter.aschedule([new_job()])
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s AND pid <> pg_backend_pid()",
                    [name],
                )
                time.sleep(0.2)  # the farewell reaches the idle socket
                return [*first, *await adapter.aschedule([new_job()])]
            finally:
                await adapter.aclose()

        records = asyncio.run(enqueue())
        assert len({record.id for record in records}) == 2
        assert sum(c.total for c in adapter.counts()) == 2


def test_aschedule_on_an_unreachable_server_raises_storage_unavailable() -> None:
    adapter = PostgresAdapter("postgresql://app:s3cret@127.0.0.1:1/test?connect_timeout=2")
    adapter._schema_ready = True  # straight to the asyncio connection

    async def enqueue() -> None:
        await adapter.aschedule([new_job()])

    with pytest.raises(StorageUnavailable) as caught:
        asyncio.run(enqueue())
    assert "s3cret" not in str(caught.value)
    adapter.close()


def test_close_drops_the_async_connection_of_an_ended_loop(adapter: PostgresAdapter) -> None:
    async def enqueue() -> None:
        await adapter.aschedule([new_job()])  # no aclose: the loop ends with it open

    asyncio.run(enqueue())
    assert adapter._async_connections.open_count == 1
    adapter.close()
    assert adapter._async_connections.open_count == 0
    asyncio.run(enqueue())  # and the next loop opens another
    assert sum(c.total for c in adapter.counts()) == 2


# -- unique keys and recurring ticks ---------------------------------------------------------


def test_records_carry_the_unique_key_until_the_job_ends(adapter: PostgresAdapter) -> None:
    records = adapter.schedule([new_job(unique_key="a"), new_job(unique_key="b"), new_job()])
    assert [record.unique_key for record in records] == ["a", "b", None]
    claimed = adapter.claim("w", None, limit=3, lease=60)
    assert sorted(str(job.unique_key) for job in claimed) == ["None", "a", "b"]
    assert {job.unique_key for job in adapter.list_jobs(states=[JobState.RUNNING])} == {
        "a",
        "b",
        None,
    }
    by_key = {job.unique_key: job for job in claimed}
    acks = [(by_key[key].id, by_key[key].lock_token or "") for key in ("a", "b")]
    assert adapter.complete_many(acks, keep=True) == [True, True]
    for job_id, _ in acks:
        kept = adapter.get(job_id)
        assert kept is not None and kept.state is JobState.COMPLETED and kept.unique_key is None
    assert adapter.schedule_one(new_job(unique_key="a")).id not in {acks[0][0], acks[1][0]}


def test_a_batch_maps_each_job_to_its_own_record(adapter: PostgresAdapter) -> None:
    held = adapter.schedule_one(new_job("b", args=["held"], unique_key="k"))
    batch = [
        new_job("a", args=[0], unique_key="k"),
        new_job("b", args=[1], unique_key="k"),  # held before the batch
        new_job("a", args=[2]),
        new_job("a", args=[3], unique_key="k"),  # same key as position 0
        new_job("b", args=[4], unique_key="k2"),
        new_job("a", args=[5]),
    ]
    records = adapter.schedule(batch)
    args = [json.loads(record.handler)["args"] for record in records]
    assert args == [[0], ["held"], [2], [0], [4], [5]]
    assert records[1].id == held.id and records[3].id == records[0].id
    assert len({records[i].id for i in (0, 1, 2, 4, 5)}) == 5
    assert sum(c.total for c in adapter.counts()) == 5


def _wait_for_lock_wait(admin: psycopg.Connection[Any], application_name: str) -> None:
    for _ in range(250):
        waiting = admin.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = %s AND wait_event_type = 'Lock'",
            [application_name],
        ).fetchone()
        if waiting == (1,):
            return
        time.sleep(0.02)
    raise AssertionError(f"{application_name} never waited for a lock")


def test_schedule_with_honours_unique_keys_in_the_callers_transaction(
    adapter: PostgresAdapter, app_conn: psycopg.Connection[Any]
) -> None:
    adapter.migrate()
    [first] = adapter.schedule_with(app_conn, [new_job(args=[1], unique_key="k")])
    [again] = adapter.schedule_with(app_conn, [new_job(args=[2], unique_key="k")])
    assert again.id == first.id and json.loads(again.handler)["args"] == [1]
    app_conn.commit()
    assert adapter.schedule_one(new_job(unique_key="k")).id == first.id
    [held] = adapter.schedule_with(app_conn, [new_job(unique_key="k")])
    assert held.id == first.id
    app_conn.rollback()


def test_schedule_with_in_repeatable_read_raises_a_serialization_failure(
    adapter: PostgresAdapter, app_conn: psycopg.Connection[Any]
) -> None:
    """A holder committed after the caller's snapshot cannot be returned: the caller's
    transaction fails as PostgreSQL says, to be retried, not as StorageUnavailable."""
    adapter.migrate()
    app_conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    app_conn.execute("SELECT 1")  # the snapshot is taken here
    holder = adapter.schedule_one(new_job(unique_key="k"))
    with pytest.raises(psycopg.errors.SerializationFailure):
        adapter.schedule_with(app_conn, [new_job(unique_key="k")])
    app_conn.rollback()
    [again] = adapter.schedule_with(app_conn, [new_job(unique_key="k")])  # the retry
    assert again.id == holder.id
    app_conn.commit()


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_an_enqueue_waits_for_an_uncommitted_holder(
    pg_url: str,
    admin: psycopg.Connection[Any],
    app_conn: psycopg.Connection[Any],
    outcome: str,
) -> None:
    name = f"qb-test-{uuid.uuid4().hex[:8]}"
    with (
        closing(PostgresAdapter(pg_url)) as app_side,
        closing(PostgresAdapter(_with_params(pg_url, application_name=name))) as other,
    ):
        app_side.migrate()
        [pending] = app_side.schedule_with(app_conn, [new_job(args=["app"], unique_key="k")])
        result: list[JobRecord | BaseException] = []

        def enqueue() -> None:
            try:
                result.append(other.schedule_one(new_job(args=["other"], unique_key="k")))
            except BaseException as exc:
                result.append(exc)

        other.now()  # connect and migrate before the race
        thread = threading.Thread(target=enqueue)
        thread.start()
        _wait_for_lock_wait(admin, name)
        assert result == []
        if outcome == "commit":
            app_conn.commit()
        else:
            app_conn.rollback()
        thread.join(10)
        [record] = result
        assert isinstance(record, JobRecord), record
        if outcome == "commit":
            assert record.id == pending.id and json.loads(record.handler)["args"] == ["app"]
        else:
            assert record.id != pending.id and json.loads(record.handler)["args"] == ["other"]
        assert sum(c.total for c in other.counts()) == 1


def test_schedule_retries_when_chosen_to_break_a_deadlock(
    pg_url: str,
    admin: psycopg.Connection[Any],
    app_conn: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two transactions take the same keys in opposite orders: PostgreSQL aborts the one
    that waited first (after deadlock_timeout), and schedule() runs its transaction again."""
    name = f"qb-test-{uuid.uuid4().hex[:8]}"
    with (
        closing(PostgresAdapter(pg_url)) as app_side,
        closing(PostgresAdapter(_with_params(pg_url, application_name=name))) as other,
    ):
        other.migrate()
        caplog.set_level(logging.INFO, logger="queuebox.backends.sql")
        [second] = app_side.schedule_with(app_conn, [new_job(args=["app"], unique_key="k2")])
        result: list[list[JobRecord] | BaseException] = []

        def enqueue() -> None:
            try:
                result.append(other.schedule([new_job(unique_key=k) for k in ("k1", "k2")]))
            except BaseException as exc:
                result.append(exc)

        thread = threading.Thread(target=enqueue)
        thread.start()
        _wait_for_lock_wait(admin, name)  # it stored k1 and waits for our k2
        [first] = app_side.schedule_with(app_conn, [new_job(args=["app"], unique_key="k1")])
        app_conn.commit()
        thread.join(10)
        [records] = result
        assert isinstance(records, list), records
        assert [record.id for record in records] == [first.id, second.id]
        assert sum(c.total for c in other.counts()) == 2
    assert "chosen to break a deadlock" in caplog.text


def test_ticks_are_aware_utc_whatever_zone_they_came_in(adapter: PostgresAdapter) -> None:
    eastern = timezone(timedelta(hours=-5))
    tick = datetime(2030, 1, 1, 3, 0, 0, 123456, tzinfo=eastern)
    record = adapter.schedule_tick("Nightly", tick, new_job(run_at=tick))
    assert record is not None and record.run_at == tick
    [(key, stored)] = adapter.recurring_ticks().items()
    assert key == "Nightly" and stored == tick and stored.utcoffset() == timedelta(0)
    assert stored.tzinfo is UTC or stored.tzname() == "UTC"
    with pytest.raises(ValueError, match="timezone-aware"):
        adapter.schedule_tick("Nightly", datetime(2031, 1, 1), new_job())


def test_a_tick_whose_job_cannot_be_stored_is_not_recorded(adapter: PostgresAdapter) -> None:
    tick = adapter.now().replace(microsecond=0)
    with pytest.raises(PayloadError, match="out of range"):
        adapter.schedule_tick("Broken", tick, new_job(priority=2**40))
    assert adapter.recurring_ticks() == {}
    assert adapter.schedule_tick("Broken", tick, new_job()) is not None
    assert adapter.recurring_ticks() == {"Broken": tick}


def test_a_tick_waits_for_a_concurrent_tick_of_the_same_key(
    pg_url: str, admin: psycopg.Connection[Any], app_conn: psycopg.Connection[Any], pg_schema: str
) -> None:
    """A worker that records a tick holds its row until commit; another worker with the same
    tick waits, then sees it recorded and stores nothing."""
    name = f"qb-test-{uuid.uuid4().hex[:8]}"
    with closing(PostgresAdapter(_with_params(pg_url, application_name=name))) as other:
        tick = other.now().replace(microsecond=0)
        recurring = sql.Identifier(pg_schema, "queuebox_jobs_recurring")
        app_conn.execute(
            sql.SQL("INSERT INTO {} (key, last_tick) VALUES ('Race', %s)").format(recurring),
            [tick],
        )
        result: list[JobRecord | BaseException | None] = []

        def tick_once() -> None:
            try:
                result.append(other.schedule_tick("Race", tick, new_job(run_at=tick)))
            except BaseException as exc:
                result.append(exc)

        thread = threading.Thread(target=tick_once)
        thread.start()
        _wait_for_lock_wait(admin, name)
        app_conn.commit()
        thread.join(10)
        assert result == [None]
        assert other.counts() == []


# -- dropped connections --------------------------------------------------------------------


def _kill_backends(admin: psycopg.Connection[Any], application_name: str) -> int:
    rows = admin.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
        " WHERE application_name = %s AND pid <> pg_backend_pid()",
        [application_name],
    ).fetchall()
    return len(rows)


def _at_most_one_error(call: Callable[[], _T], errors: list[StorageUnavailable]) -> _T:
    try:
        return call()
    except StorageUnavailable as exc:
        errors.append(exc)
        return call()


def test_calls_survive_terminated_backends_and_no_job_is_lost(
    pg_url: str, admin: psycopg.Connection[Any]
) -> None:
    name = f"qb-test-{uuid.uuid4().hex[:8]}"
    url = _with_params(pg_url, application_name=name)
    errors: list[StorageUnavailable] = []
    with closing(PostgresAdapter(url)) as adapter, closing(PostgresAdapter(pg_url)) as producer:
        ids = {record.id for record in adapter.schedule([new_job("q") for _ in range(6)])}
        adapter.wait_for_work(["q"], 0.01)  # opens the LISTEN connection too
        assert _kill_backends(admin, name) == 2
        done: set[str] = set()
        while True:
            jobs = _at_most_one_error(lambda: adapter.claim("w", ["q"], limit=2, lease=60), errors)
            if not jobs:
                break
            assert _kill_backends(admin, name) == 1
            acks = [(job.id, job.lock_token or "") for job in jobs]
            assert all(_at_most_one_error(functools.partial(adapter.complete_many, acks), errors))
            done |= {job.id for job in jobs}
            assert _kill_backends(admin, name) == 1
        assert done == ids
        assert len(errors) <= 1, errors
        print(f"StorageUnavailable raised {len(errors)} times")
        # The waiter reconnects its LISTEN connection and still wakes on a notify.
        adapter.wait_for_work(["q"], 0.01)
        assert _kill_backends(admin, name) == 2
        adapter.wait_for_work(["q"], 0.01)
        timer = threading.Timer(0.2, lambda: producer.schedule_one(new_job("q")))
        timer.start()
        elapsed = _timed(lambda: adapter.wait_for_work(["q"], 10))
        timer.join()
        assert elapsed < 1.0


def test_a_drop_during_a_call_raises_once_then_the_next_call_works(
    pg_url: str, admin: psycopg.Connection[Any], pg_schema: str
) -> None:
    name = f"qb-test-{uuid.uuid4().hex[:8]}"
    with closing(PostgresAdapter(_with_params(pg_url, application_name=name))) as adapter:
        record = adapter.schedule_one(new_job())
        outcome: list[object] = []

        def claim() -> None:
            try:
                outcome.append(adapter.claim("w", None, lease=60))
            except StorageUnavailable as exc:
                outcome.append(exc)

        with admin.transaction():  # hold the table so that the claim blocks mid-call
            admin.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.Identifier(pg_schema, "queuebox_jobs")
                )
            )
            thread = threading.Thread(target=claim)
            thread.start()
            for _ in range(200):
                waiting = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name = %s AND wait_event_type = 'Lock'",
                    [name],
                ).fetchone()
                if waiting == (1,):
                    break
                time.sleep(0.02)
            assert _kill_backends(admin, name) == 1
        thread.join()
        [error] = outcome
        assert isinstance(error, StorageUnavailable), error
        assert "PostgreSQL is unavailable" in str(error)
        [job] = adapter.claim("w", None, lease=60)
        assert job.id == record.id and job.attempts == 1
