"""The worker registry, throughput history and job search of the SQL stores
(``queuebox/backends/sql/monitor.py``) beyond the contract: their tables on a database made
before them, keyset pages at 100,000 jobs, workers lost by real processes, retention, and
tallies added by several processes at once."""

# ruff: noqa: S608 - raw SQL on the test's own database, with names and numbers of its own

from __future__ import annotations

import signal
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers import Process, wait_until, write_project

from queuebox.backends import from_url
from queuebox.backends.base import (
    Adapter,
    JobSearch,
    JobState,
    ThroughputHistory,
    WorkerRegistry,
)
from queuebox.backends.postgres import PostgresAdapter
from queuebox.backends.sql.monitor import SQLMonitor
from queuebox.backends.sqlite import SQLiteAdapter
from queuebox.testing.registry import a_worker, tally

ROWS = 100_000


@dataclass
class SQLStoreUnderTest:
    """A fresh SQL store: its URL, and raw SQL on its database (past queuebox)."""

    kind: str
    url: str
    tables: Callable[[str], str]  # "jobs", "workers"...: the table's name as raw SQL writes it
    raw: Callable[[str], list[tuple[Any, ...]]]

    def open(self) -> SQLMonitor:
        adapter = from_url(self.url)
        assert isinstance(adapter, SQLMonitor)
        return adapter


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLStoreUnderTest]:
    if request.param == "sqlite":
        path = tmp_path / "store.db"

        def raw_sqlite(text: str) -> list[tuple[Any, ...]]:
            connection = sqlite3.connect(path, isolation_level=None, timeout=30)
            try:
                return (
                    connection.executescript(text).fetchall()
                    if ";" in text
                    else (connection.execute(text).fetchall())
                )
            finally:
                connection.close()

        yield SQLStoreUnderTest(
            "sqlite", f"sqlite:///{path}", lambda name: f"queuebox_{name}", raw_sqlite
        )
        return
    import psycopg

    base = request.getfixturevalue("postgres_url")
    schema = "t" + uuid.uuid4().hex[:12]

    def raw_postgres(text: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(base, autocommit=True) as connection:
            cursor = connection.execute(text.encode())
            return cursor.fetchall() if cursor.description else []

    try:
        yield SQLStoreUnderTest(
            "postgres",
            f"{base}?schema={schema}",
            # Beside the job table, named after it (<table>_workers, <table>_minutes).
            lambda name: f'"{schema}".queuebox_jobs' + ("" if name == "jobs" else f"_{name}"),
            raw_postgres,
        )
    finally:
        raw_postgres(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_both_dialects_declare_the_interfaces() -> None:
    for adapter_class in (SQLiteAdapter, PostgresAdapter):
        assert issubclass(adapter_class, WorkerRegistry)
        assert issubclass(adapter_class, ThroughputHistory)
        assert issubclass(adapter_class, JobSearch)


def _job_version(store: SQLStoreUnderTest) -> int:
    if store.kind == "sqlite":
        return int(store.raw("PRAGMA user_version")[0][0])
    return int(store.raw(f"SELECT max(version) FROM {store.tables('migrations')}")[0][0])


def test_the_tables_are_created_on_a_database_made_before_them(
    sql_store: SQLStoreUnderTest,
) -> None:
    first = sql_store.open()
    try:
        job = first.schedule_one(_new_job("Kept"))
    finally:
        first.close()
    version = _job_version(sql_store)
    for table in ("workers", "minutes"):  # a database from before them
        sql_store.raw(f"DROP TABLE {sql_store.tables(table)}")
    adapter = sql_store.open()
    try:
        adapter.beat(a_worker("w1"), ttl=30, stats=[tally(_minute(adapter), succeeded=2)])
        assert [w.id for w in adapter.workers()] == ["w1"]
        assert [r.succeeded for r in adapter.stats(since=_minute(adapter))] == [2]
        assert [j.id for j in adapter.search_jobs().jobs] == [job.id], "the jobs are untouched"
        again = sql_store.open()  # the script runs again on every store opened: idempotent
        try:
            assert [w.id for w in again.workers()] == ["w1"]
        finally:
            again.close()
    finally:
        adapter.close()
    assert _job_version(sql_store) == version, "the job table's version is not theirs"


def _new_job(name: str, args: list[object] | None = None) -> Any:
    from queuebox.testing.support import new_job

    return new_job(name=name, args=args or [])


def _minute(adapter: Adapter) -> Any:
    return adapter.now().replace(second=0, microsecond=0)


def _fill(store: SQLStoreUnderTest, rows: int) -> None:
    """``rows`` jobs in one statement: every tenth is named Rare and holds "needle" in its
    arguments, every third is on the queue "other"."""
    jobs = store.tables("jobs")
    if store.kind == "sqlite":
        now = "CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000"
        store.raw(
            f"""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
            INSERT INTO {jobs} (name, handler, queue, priority, run_at, created_at, updated_at)
            SELECT CASE WHEN i % 10 = 0 THEN 'Rare' ELSE 'Common' END,
                   '{{"name":"J","args":["' || CASE WHEN i % 10 = 0 THEN 'needle' ELSE 'hay' END
                   || ' ' || i || '"],"kwargs":{{}}}}',
                   CASE WHEN i % 3 = 0 THEN 'other' ELSE 'default' END,
                   50, {now}, {now}, {now}
            FROM n
            """
        )
        return
    store.raw(
        f"""
        INSERT INTO {jobs} (name, handler, queue, priority, run_at)
        SELECT CASE WHEN i % 10 = 0 THEN 'Rare' ELSE 'Common' END,
               '{{"name":"J","args":["' || CASE WHEN i % 10 = 0 THEN 'needle' ELSE 'hay' END
               || ' ' || i || '"],"kwargs":{{}}}}',
               CASE WHEN i % 3 = 0 THEN 'other' ELSE 'default' END,
               50, now()
        FROM generate_series(1, {rows}) AS i;
        ANALYZE {jobs}
        """
    )


def _timed(call: Callable[[], object]) -> float:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_a_page_deep_in_100000_jobs_costs_what_the_first_costs(
    sql_store: SQLStoreUnderTest,
) -> None:
    adapter = sql_store.open()
    try:
        adapter.migrate()
        _fill(sql_store, ROWS)
        first_page = adapter.search_jobs(limit=50)
        top = int(first_page.jobs[0].id)
        deep = str(top - 90_000)  # 90,000 jobs from the top: page 1,800 of 2,000
        for filters in ({}, {"name": "Rare"}, {"queue": "other"}, {"text": "NEEDLE"}):
            page = adapter.search_jobs(limit=50, cursor=deep, **filters)  # type: ignore[arg-type]
            assert page.jobs and all(int(job.id) < int(deep) for job in page.jobs), filters
            first = _timed(lambda f=filters: adapter.search_jobs(limit=50, **f))  # type: ignore[misc]
            later = _timed(lambda f=filters: adapter.search_jobs(limit=50, cursor=deep, **f))  # type: ignore[misc]
            # An OFFSET would read ~100,000 rows for the deep page against 50 for the first.
            assert later < 5 * first + 0.02, (filters, first, later)
    finally:
        adapter.close()


def test_a_filter_that_matches_nothing_reads_scan_limit_rows_not_the_table(
    sql_store: SQLStoreUnderTest,
) -> None:
    """At 100,000 jobs a name, a queue or a text that no job has answers after
    ``scan_limit`` rows, with an empty page and a cursor below the rows it read; following
    the cursors reaches the end."""
    adapter = sql_store.open()
    try:
        adapter.migrate()
        _fill(sql_store, ROWS)
        top = int(adapter.search_jobs(limit=1).jobs[0].id)
        for filters in ({"name": "Nobody"}, {"queue": "nobody"}, {"text": "no-such-text"}):
            page = adapter.search_jobs(limit=50, **filters)  # type: ignore[arg-type]
            assert page.jobs == [] and page.next_cursor is not None, filters
            # The cursor is the id to go on below: no further down than the rows read.
            assert top - adapter.scan_limit * 2 <= int(page.next_cursor) < top, filters
        calls, cursor = 0, None
        while calls < 2 * ROWS // adapter.scan_limit:
            calls += 1
            page = adapter.search_jobs(limit=50, cursor=cursor, name="Nobody")
            assert page.jobs == []
            cursor = page.next_cursor
            if cursor is None:
                break
        # Each call reads at least scan_limit rows and less than twice as many.
        assert cursor is None and calls >= ROWS // (2 * adapter.scan_limit), calls
    finally:
        adapter.close()


def test_a_state_few_jobs_are_in_is_found_without_reading_the_others(
    sql_store: SQLStoreUnderTest,
) -> None:
    adapter = sql_store.open()
    try:
        adapter.migrate()
        _fill(sql_store, ROWS)
        jobs = sql_store.tables("jobs")
        failed = ["7", "50000", str(ROWS - 3)]
        sql_store.raw(
            f"UPDATE {jobs} SET failed_at = created_at, last_error = 'Boom' "
            f"WHERE id IN ({', '.join(failed)})"
        )
        plain = _timed(lambda: adapter.search_jobs(limit=50))
        page = adapter.search_jobs(state=JobState.FAILED, limit=2)
        assert [job.id for job in page.jobs] == [failed[2], failed[1]]
        assert page.next_cursor is not None
        rest = adapter.search_jobs(state=JobState.FAILED, limit=2, cursor=page.next_cursor)
        assert [job.id for job in rest.jobs] == [failed[0]] and rest.next_cursor is None
        for state in (JobState.FAILED, JobState.CANCELLED, JobState.RUNNING):
            took = _timed(lambda s=state: adapter.search_jobs(state=s, limit=50))  # type: ignore[misc]
            # Walking 100,000 rows takes ~100 times a page of 50.
            assert took < 5 * plain + 0.02, (state, plain, took)
    finally:
        adapter.close()


def test_a_filtered_walk_visits_every_match_once_newest_first(
    sql_store: SQLStoreUnderTest,
) -> None:
    adapter = sql_store.open()
    try:
        adapter.migrate()
        _fill(sql_store, 30_000)
        for filters, expected in (({"name": "Rare"}, 3_000), ({"text": "needle"}, 3_000)):
            seen: list[int] = []
            cursor = None
            for _ in range(200):
                page = adapter.search_jobs(limit=400, cursor=cursor, **filters)  # type: ignore[arg-type]
                seen += [int(job.id) for job in page.jobs]
                cursor = page.next_cursor
                if cursor is None:
                    break
            assert len(seen) == expected == len(set(seen)), filters
            assert seen == sorted(seen, reverse=True)
        with pytest.raises(ValueError, match="cursor"):
            adapter.search_jobs(cursor="not-a-cursor")
    finally:
        adapter.close()


def test_history_past_retention_is_deleted_from_the_table(sql_store: SQLStoreUnderTest) -> None:
    adapter = sql_store.open()
    try:
        adapter.retention = 600.0  # (a class attribute: a day by default)
        now = _minute(adapter)
        adapter.add_stats([tally(now - timedelta(minutes=m), succeeded=1) for m in range(30)])
        count = f"SELECT count(*) FROM {sql_store.tables('minutes')}"
        assert 10 <= sql_store.raw(count)[0][0] <= 11, "only the last ten minutes are kept"
        adapter.retention = 60.0
        adapter.beat(a_worker("w1"), ttl=30, stats=[tally(now, succeeded=1)])
        assert sql_store.raw(count)[0][0] <= 2, "a beat's tallies prune as well"
        assert [r.succeeded for r in adapter.stats(since=now)] == [2]
    finally:
        adapter.close()


_ADDER = textwrap.dedent(
    """
    import sys
    from datetime import datetime
    from queuebox.backends import from_url
    from queuebox.testing.registry import a_worker, tally

    url, worker, minute = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])
    store = from_url(url)
    for n in range(40):
        # Two rows per call, in an order that differs between processes.
        rows = [tally(minute, "q", "A", succeeded=1), tally(minute, "q", "B", failed=1)]
        store.beat(a_worker(worker), ttl=30, stats=rows if n % 2 else rows[::-1])
    store.close()
    """
)


def test_tallies_of_several_processes_add_up(sql_store: SQLStoreUnderTest) -> None:
    adapter = sql_store.open()
    try:
        adapter.migrate()
        minute = _minute(adapter)
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", _ADDER, sql_store.url, f"w{n}", minute.isoformat()]
            )
            for n in range(4)
        ]
        try:
            assert [p.wait(120) for p in processes] == [0, 0, 0, 0]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        rows = {r.name: r for r in adapter.stats(since=minute)}
        assert rows["A"].succeeded == 160 and rows["B"].failed == 160
        assert rows["A"].runtime_counts[3] == 160
        assert [w.id for w in adapter.workers()] == ["w0", "w1", "w2", "w3"]
    finally:
        adapter.close()


def test_a_killed_worker_is_lost_and_a_stopped_one_leaves(
    sql_store: SQLStoreUnderTest, tmp_path: Path
) -> None:
    (tmp_path / "project").mkdir()
    project = write_project(tmp_path / "project", sql_store.url)
    adapter = sql_store.open()
    adapter.lost_kept = 2.0
    killed = Process(project, "work")
    stopped = Process(project, "work")
    try:
        wait_until(lambda: len(adapter.workers()) == 2, timeout=60, what="two workers recorded")
        assert not any(w.lost for w in adapter.workers())
        pids = {w.pid: w.id for w in adapter.workers()}
        assert set(pids) == {killed.popen.pid, stopped.popen.pid}
        stopped.signal(signal.SIGTERM)
        assert stopped.wait(30) == 0
        assert [w.pid for w in adapter.workers()] == [killed.popen.pid], "a clean exit retires"
        killed.popen.send_signal(signal.SIGKILL)
        killed.popen.wait(10)
        wait_until(lambda: all(w.lost for w in adapter.workers()), timeout=40, what="lost")
        [lost] = adapter.workers()
        assert lost.pid == killed.popen.pid and lost.lost
        wait_until(lambda: adapter.workers() == [], timeout=20, what="lost record removed")
    finally:
        killed.kill()
        stopped.kill()
        adapter.close()
