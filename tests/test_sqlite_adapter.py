"""What the SQLite store does beyond the shared contract: URLs, schema, plans, concurrency."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import queuebox.backends
from queuebox.backends.base import JobState, reclaim_note
from queuebox.backends.sql import is_empty, load_queries
from queuebox.backends.sqlite import SCHEMA_VERSION, SQLiteAdapter
from queuebox.errors import ConfigurationError, StorageUnavailable
from queuebox.testing import new_job

LEASE = 60.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def adapter(db_path: Path) -> Iterator[SQLiteAdapter]:
    adapter = SQLiteAdapter(db_path)
    try:
        yield adapter
    finally:
        adapter.close()


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection that looks at the file behind the adapter's back."""
    return sqlite3.connect(path, isolation_level=None)


def plan(db_path: Path, name: str, params: dict[str, object]) -> list[str]:
    with raw(db_path) as connection:
        query = "EXPLAIN QUERY PLAN " + load_queries("sqlite")[name]
        return [row[3] for row in connection.execute(query, params)]


# -- URLs and paths --------------------------------------------------------------------------


def test_relative_url_is_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    adapter = queuebox.backends.from_url("sqlite:///data/jobs.db")
    assert isinstance(adapter, SQLiteAdapter)
    assert adapter.path == tmp_path / "data" / "jobs.db"
    adapter.schedule_one(new_job())
    adapter.close()
    assert (tmp_path / "data" / "jobs.db").exists()


def test_absolute_url_and_options(tmp_path: Path) -> None:
    adapter = SQLiteAdapter.from_url(f"sqlite:///{tmp_path}/with%20space.db?busy_timeout=2.5")
    assert adapter.path == tmp_path / "with space.db"
    assert adapter.busy_timeout == 2.5
    assert SQLiteAdapter.from_url(f"sqlite:///{tmp_path}/x.db").busy_timeout == 30.0


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://", "no database path"),
        ("sqlite:///", "no database path"),
        ("sqlite://somehost/jobs.db", "names a host"),
        ("sqlite:///jobs.db?busy_timeout=soon", "busy_timeout"),
        ("sqlite:///jobs.db?journal=delete", "unknown option"),
        ("sqlite:///:memory:", "memory://"),
        ("sqlite:///no/such/directory/jobs.db", "does not exist"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        queuebox.backends.from_url(url)


def test_missing_directory_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        SQLiteAdapter(tmp_path / "missing" / "jobs.db")
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ConfigurationError, match="is a directory"):
        SQLiteAdapter(tmp_path)


def test_a_file_that_is_not_a_database_is_storage_unavailable(db_path: Path) -> None:
    db_path.write_bytes(b"this is not a SQLite database, just some text" * 100)
    adapter = SQLiteAdapter(db_path)
    with pytest.raises(StorageUnavailable, match=str(db_path)):
        adapter.schedule_one(new_job())


# -- schema ----------------------------------------------------------------------------------


def test_schema_is_created_on_first_use_with_wal_and_a_version(
    adapter: SQLiteAdapter, db_path: Path
) -> None:
    adapter.schedule_one(new_job())
    with raw(db_path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = {row[1]: row[2] for row in connection.execute("PRAGMA table_info(queuebox_jobs)")}
    redwood = "id attempts handler queue priority run_at locked_at locked_by last_error"
    extra = "failed_at created_at updated_at name lock_expires_at lock_token completed_at"
    extra += " unique_key cancelled_at limit_key max_concurrency rate_count rate_per"
    assert set(columns) == set(f"{redwood} {extra}".split())
    assert columns["handler"] == "TEXT" and columns["run_at"] == "INTEGER"


def test_connections_keep_temporary_tables_in_memory(adapter: SQLiteAdapter) -> None:
    # The claim's CTEs build small temporary b-trees: as files (SQLite's default) each one
    # is opened and unlinked per claim, over three times the CPU of the claim itself.
    with adapter._session() as connection:  # the dialects' (protected) API
        assert connection.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY


def test_migrate_is_idempotent_and_refuses_a_newer_schema(
    adapter: SQLiteAdapter, db_path: Path
) -> None:
    adapter.migrate()
    record = adapter.schedule_one(new_job())
    adapter.migrate()
    assert adapter.get(record.id) is not None
    adapter.close()
    with raw(db_path) as connection:
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigurationError, match="newer"):
        SQLiteAdapter(db_path).migrate()


def test_ids_are_never_reused(adapter: SQLiteAdapter) -> None:
    first = adapter.schedule_one(new_job())
    assert adapter.delete(first.id)
    second = adapter.schedule_one(new_job())
    assert int(second.id) > int(first.id)


def test_times_are_integer_microseconds_from_the_store_clock(
    adapter: SQLiteAdapter, db_path: Path
) -> None:
    exact = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    record = adapter.schedule_one(new_job(run_at=exact))
    assert record.run_at == exact and record.run_at.tzinfo is not None
    with raw(db_path) as connection:
        stored = connection.execute(
            "SELECT run_at, typeof(created_at) FROM queuebox_jobs"
        ).fetchone()
    assert stored == (
        (exact - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1),
        "integer",
    )
    adapter.schedule_one(new_job())
    claimed = adapter.claim("w1", None, limit=1, lease=12.5)[0]
    assert claimed.locked_at == claimed.updated_at, "one statement, one 'now'"
    assert claimed.lock_expires_at == (claimed.locked_at or exact) + timedelta(seconds=12.5)
    assert abs((adapter.now() - datetime.now(UTC)).total_seconds()) < 5


# -- claim -----------------------------------------------------------------------------------


def test_claim_plans_search_the_waiting_index_and_never_scan_the_table(
    adapter: SQLiteAdapter, db_path: Path
) -> None:
    adapter.migrate()
    params: dict[str, object] = {"worker_id": "w", "limit": 5, "lease": 1, "nonce": "n"}
    for queues in (None, json.dumps(["a", "b"])):
        steps = plan(db_path, "claim", {**params, "queues": queues})
        assert any(
            "USING INDEX queuebox_jobs_free (queue=? AND priority=? AND run_at<?)" in step
            for step in steps
        ), steps
        assert any("USING INDEX queuebox_jobs_locks (lock_expires_at<?)" in step for step in steps)
        table_scans = [s for s in steps if s.startswith("SCAN") and "queuebox_jobs" in s]
        assert table_scans == [], steps
        assert not any(s.startswith("SCAN job") for s in steps), steps
    for queues in (None, json.dumps(["a"])):
        steps = plan(db_path, "next_due", {"queues": queues})
        assert not [s for s in steps if s.startswith("SCAN") and "queuebox_jobs" in s], steps


def test_claim_skips_many_future_jobs_without_reading_them(
    adapter: SQLiteAdapter, db_path: Path
) -> None:
    """Jobs not yet due that sort ahead of a due one are stepped over by index seeks."""
    now = adapter.now()
    adapter.schedule([new_job("q", 1, run_at=now + timedelta(hours=1)) for _ in range(3000)])
    ready = adapter.schedule_one(new_job("q", 90))
    steps: list[int] = []

    def count_steps() -> int:
        steps.append(1)
        return 0  # go on

    params = {"worker_id": "w1", "queues": '["q"]', "limit": 10, "lease": 60, "nonce": "n"}
    with raw(db_path) as connection:  # the claim statement itself, as the adapter runs it
        connection.set_progress_handler(count_steps, 100)
        claimed = connection.execute(load_queries("sqlite")["claim"], params).fetchall()
    assert [str(row[0]) for row in claimed] == [ready.id]
    # A scan of 3000 index entries takes tens of thousands of VM steps; seeks take hundreds.
    assert len(steps) * 100 < 5000, f"claim ran {len(steps) * 100} VM steps"


def test_claim_orders_expired_locks_with_waiting_jobs(adapter: SQLiteAdapter) -> None:
    now = adapter.now()
    old = adapter.schedule_one(new_job("a", 50, run_at=now - timedelta(minutes=5)))
    adapter.claim("lost", None, limit=1, lease=0.05)
    newer = adapter.schedule_one(new_job("b", 50, run_at=now - timedelta(minutes=1)))
    urgent = adapter.schedule_one(new_job("c", 2))
    time.sleep(0.15)
    claimed = adapter.claim("w2", ["a", "b", "c", "a"], limit=10, lease=LEASE)
    assert [job.id for job in claimed] == [urgent.id, old.id, newer.id]


def test_reclaim_note_matches_base(adapter: SQLiteAdapter) -> None:
    adapter.schedule_one(new_job())
    lost = adapter.claim("worker-ü 'quoted'", None, limit=1, lease=0.0123)[0]
    time.sleep(0.05)
    taken = adapter.claim("w2", None, limit=1, lease=LEASE)[0]
    assert taken.last_error == reclaim_note("worker-ü 'quoted'", lost.lock_expires_at)
    whole = datetime(2030, 1, 1, tzinfo=UTC)
    assert reclaim_note("x", whole).count("+00:00") == 1  # no fraction printed for .000000


def test_tokens_are_distinct_and_random(adapter: SQLiteAdapter) -> None:
    adapter.schedule([new_job() for _ in range(20)])
    tokens = [job.lock_token or "" for job in adapter.claim("w", None, limit=20, lease=LEASE)]
    assert len(set(tokens)) == 20
    assert all(len(token) >= 32 for token in tokens)
    assert len({token.split(".")[0] for token in tokens}) == 1  # one nonce per claim
    assert adapter.claim("w", None, limit=1, lease=LEASE) == []


@pytest.mark.parametrize(
    "bad", ["bogus", "", "1' OR '1'='1", "-1", "1_0", " 1", "9" * 30, "\u0661"]
)
def test_bad_ids_never_raise(adapter: SQLiteAdapter, bad: str) -> None:
    adapter.schedule_one(new_job())
    assert adapter.get(bad) is None
    assert adapter.delete(bad) is False
    assert adapter.retry(bad) is False
    assert adapter.complete(bad, "t") is False
    assert adapter.complete_many([(bad, "t")]) == [False]
    assert adapter.extend(bad, "t", lease=1) is False
    assert len(adapter.list_jobs()) == 1


# -- waiting ---------------------------------------------------------------------------------


def test_wait_for_work_wakes_when_a_delayed_job_is_due(adapter: SQLiteAdapter) -> None:
    adapter.schedule_one(new_job("later", delay=0.3))
    adapter.schedule_one(new_job("elsewhere", delay=0.05))
    started = time.monotonic()
    adapter.wait_for_work(["later"], 5.0)
    elapsed = time.monotonic() - started
    assert 0.15 < elapsed < 1.5, elapsed
    assert len(adapter.claim("w", ["later"], limit=1, lease=LEASE)) == 1


def test_wait_for_work_wakes_when_a_lock_expires(adapter: SQLiteAdapter) -> None:
    adapter.schedule_one(new_job())
    adapter.claim("w", None, limit=1, lease=0.3)
    started = time.monotonic()
    adapter.wait_for_work(None, 5.0)
    assert time.monotonic() - started < 1.5


def test_wait_for_work_notices_a_commit_by_another_process(
    adapter: SQLiteAdapter, db_path: Path, tmp_path: Path
) -> None:
    adapter.schedule_one(new_job("wake", delay=3600))  # a far due time must not mask it
    adapter.wait_for_work(["wake"], 0.01)

    def enqueue_later() -> None:
        time.sleep(0.3)
        other = SQLiteAdapter(db_path)
        other.schedule_one(new_job("wake"))
        other.close()

    pid = _fork(enqueue_later, tmp_path / "enqueue.err")
    started = time.monotonic()
    adapter.wait_for_work(["wake"], 10.0)
    elapsed = time.monotonic() - started
    _wait_all([pid], tmp_path)
    assert elapsed < 2.0, f"slept {elapsed:.2f}s through another process's enqueue"


def test_wait_for_work_returns_at_once_when_work_is_due(adapter: SQLiteAdapter) -> None:
    adapter.schedule_one(new_job("q"))
    started = time.monotonic()
    adapter.wait_for_work(["q"], 5.0)
    adapter.wait_for_work(None, 5.0)
    assert time.monotonic() - started < 0.5
    started = time.monotonic()
    adapter.wait_for_work(["empty"], 0.2)
    assert 0.15 < time.monotonic() - started < 2.0


# -- errors and contention -------------------------------------------------------------------


def test_a_lock_held_past_the_busy_timeout_is_storage_unavailable(db_path: Path) -> None:
    adapter = SQLiteAdapter(db_path, busy_timeout=0.2)
    adapter.migrate()
    blocker = raw(db_path)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageUnavailable, match=r"busy_timeout=0\.2"):
            adapter.schedule_one(new_job())
        assert adapter.counts() == []  # readers are not blocked in WAL mode
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    adapter.schedule_one(new_job())  # and the adapter recovers
    adapter.close()


def test_a_failed_write_rolls_back(adapter: SQLiteAdapter) -> None:
    # A priority no INTEGER column holds (the job layer allows 1 to 100): the batch's one
    # statement fails after its first row, a lone job's insert at the bind.
    with pytest.raises(sqlite3.IntegrityError, match="priority"):
        adapter.schedule([new_job(), new_job(priority=2**70)])
    with pytest.raises(OverflowError):
        adapter.schedule([new_job(priority=2**70)])
    assert adapter.counts() == []
    adapter.schedule_one(new_job())  # the connection is not left inside a transaction


# -- threads and processes -------------------------------------------------------------------


def test_heartbeat_thread_shares_the_adapter(adapter: SQLiteAdapter) -> None:
    adapter.schedule([new_job() for _ in range(50)])
    claimed = adapter.claim("w", None, limit=50, lease=0.5)
    errors: list[BaseException] = []

    def heartbeat() -> None:
        try:
            for _ in range(5):
                for job in claimed:
                    adapter.extend(job.id, job.lock_token or "", lease=0.5)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=heartbeat)
    thread.start()
    results = adapter.complete_many([(job.id, job.lock_token or "") for job in claimed])
    thread.join()
    assert errors == [] and all(results)
    assert adapter.counts() == []


def test_threads_claim_each_job_once(adapter: SQLiteAdapter) -> None:
    records = adapter.schedule([new_job(f"q{i % 4}") for i in range(400)])
    seen: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        while jobs := adapter.claim(threading.current_thread().name, None, limit=3, lease=LEASE):
            assert all(adapter.complete_many([(j.id, j.lock_token or "") for j in jobs]))
            with lock:
                seen.extend(job.id for job in jobs)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == sorted(record.id for record in records)


def test_close_then_reuse_reconnects(adapter: SQLiteAdapter) -> None:
    record = adapter.schedule_one(new_job())
    thread = threading.Thread(target=lambda: adapter.get(record.id))
    thread.start()
    thread.join()
    assert adapter.open_connections == 2
    adapter.close()
    assert adapter.open_connections == 0
    assert adapter.get(record.id) is not None


def _fork(work: Callable[[], None], error_file: Path) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        work()
    except BaseException:
        code = 1
        error_file.write_text(traceback.format_exc())
    finally:
        os._exit(code)


def _wait_all(pids: list[int], tmp_path: Path) -> None:
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        errors = "\n".join(p.read_text() for p in tmp_path.glob("*.err"))
        assert os.waitstatus_to_exitcode(status) == 0, errors


def test_an_adapter_used_before_fork_opens_a_new_connection_in_the_child(
    adapter: SQLiteAdapter, tmp_path: Path
) -> None:
    adapter.schedule_one(new_job())
    assert adapter.open_connections == 1

    def child() -> None:
        assert adapter.open_connections == 0, "the parent's connection is not the child's"
        jobs = adapter.claim("child", None, limit=1, lease=LEASE)
        assert len(jobs) == 1
        assert adapter.complete(jobs[0].id, jobs[0].lock_token or "")
        assert adapter.open_connections == 1
        adapter.close()

    _wait_all([_fork(child, tmp_path / "child.err")], tmp_path)
    assert adapter.counts() == []
    assert adapter.open_connections == 1  # the parent's own, untouched by the child


def _enqueue(path: Path, total: int, ids_file: Path, done_file: Path) -> None:
    adapter = SQLiteAdapter(path)
    ids: list[str] = []
    for start in range(0, total, 20):
        batch = [new_job(f"q{i % 3}", 1 + i % 7) for i in range(start, min(total, start + 20))]
        ids.extend(record.id for record in adapter.schedule(batch))
    ids_file.write_text("\n".join(ids))
    done_file.touch()
    adapter.close()


def _claim_and_complete(path: Path, log: Path, done_file: Path) -> None:
    adapter = SQLiteAdapter(path)
    worker = f"proc-{os.getpid()}"
    idle_rounds = 0
    with log.open("w") as out:
        while idle_rounds < 3:
            jobs = adapter.claim(worker, None, limit=5, lease=LEASE)
            if not jobs:
                if done_file.exists():
                    idle_rounds += 1
                time.sleep(0.005)
                continue
            idle_rounds = 0
            out.write("".join(f"{job.id}\n" for job in jobs))
            out.flush()
            # The pause stands for the jobs' own work. Without it one process can hold
            # the write lock back to back while the others sleep in SQLite's busy handler,
            # and the test would not show several processes sharing the file.
            time.sleep(0.002)
            first, *rest = jobs
            assert adapter.complete(first.id, first.lock_token or "", keep=True)
            assert all(adapter.complete_many([(j.id, j.lock_token or "") for j in rest]))
    adapter.close()


@pytest.mark.slow  # about 5 s: SQLite's busy handler sleeps in 1-25 ms steps
def test_four_processes_and_an_enqueuer_share_one_file(tmp_path: Path, db_path: Path) -> None:
    total = 2000
    SQLiteAdapter(db_path).migrate()
    ids_file, done_file = tmp_path / "ids.txt", tmp_path / "enqueued"
    logs = [tmp_path / f"worker{n}.log" for n in range(4)]
    pids = [
        _fork(
            functools.partial(_claim_and_complete, db_path, log, done_file), log.with_suffix(".err")
        )
        for log in logs
    ]
    pids.append(
        _fork(lambda: _enqueue(db_path, total, ids_file, done_file), tmp_path / "enqueue.err")
    )
    _wait_all(pids, tmp_path)
    claimed = [line for log in logs for line in log.read_text().split()]
    assert len(claimed) == total and len(set(claimed)) == total
    assert sorted(claimed) == sorted(ids_file.read_text().split())
    assert sum(1 for log in logs if log.read_text()) >= 2, "the workers never overlapped"
    adapter = SQLiteAdapter(db_path)
    kept = adapter.list_jobs(limit=total)
    assert kept and all(job.state is JobState.COMPLETED for job in kept)
    adapter.close()


# -- queries ---------------------------------------------------------------------------------


def test_every_query_prepares(adapter: SQLiteAdapter, db_path: Path) -> None:
    adapter.migrate()
    prepared = []
    with raw(db_path) as connection:
        for name, query in load_queries("sqlite").items():
            if is_empty(query) or name.startswith("migrate_"):
                continue
            statement = "\n".join(line for line in query.splitlines() if not line.startswith("--"))
            if statement.upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA")):
                continue
            params: dict[str, object] = dict.fromkeys(
                ("queues", "states", "run_at", "id", "token", "error", "name", "handler")
            )
            params |= {"unique_key": None, "ids": None, "tokens": None, "acks": None}
            params |= {"jobs": "[]", "held": "[]"}
            params |= {"key": "k", "tick": 0}
            params |= {"limit": 1, "offset": 0, "lease": 1, "delay": 0, "nonce": "n"}
            params |= {"worker_id": "w", "queue": "q", "priority": 1}
            params |= dict.fromkeys(("limit_key", "max_concurrency", "rate_count", "rate_per"))
            connection.execute(f"EXPLAIN {query}", params).fetchall()
            prepared.append(name)
    assert {"claim", "next_due", "list_jobs", "insert_unique_jobs", "insert_job"} <= set(prepared)


def _schedule_one(path: Path) -> None:
    adapter = SQLiteAdapter(path)
    adapter.schedule_one(new_job())
    adapter.close()


def test_processes_creating_a_new_store_together_do_not_clash(tmp_path: Path) -> None:
    """Switching a new file to WAL reports "database is locked" without waiting."""
    for trial in range(5):
        path = tmp_path / f"new{trial}.db"
        pids = [
            _fork(functools.partial(_schedule_one, path), tmp_path / f"p{trial}.{n}.err")
            for n in range(6)
        ]
        _wait_all(pids, tmp_path)
        adapter = SQLiteAdapter(path)
        assert len(adapter.list_jobs()) == 6
        adapter.close()


def test_stored_times_convert_once_per_value_and_never_take_a_bool_for_an_integer() -> None:
    """The conversion is memoised (a claim's rows share most of their times): a value
    seen before converts to the same datetime, and ``True`` (equal to 1, the same hash) is
    still refused after 1 was converted."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert SQLiteAdapter._moment(1) == epoch + timedelta(microseconds=1)
    assert SQLiteAdapter._moment(1) is SQLiteAdapter._moment(1)
    for bad in (True, 1.0, "1", None):
        with pytest.raises(TypeError, match="is not integer microseconds"):
            SQLiteAdapter._moment(bad)


def test_a_claimed_batch_reads_every_column_by_its_name(tmp_path: Path) -> None:
    """A claim's rows (whole jobs) are read as dicts named once per statement: each
    record of a batch has its own values in the right fields."""
    adapter = SQLiteAdapter(tmp_path / "names.db")
    try:
        made = adapter.schedule(
            [new_job(f"q{n}", args=[n], priority=10 + n, delay=0) for n in range(3)]
        )
        claimed = adapter.claim("w1", None, limit=3, lease=60)
        by_id = {record.id: record for record in claimed}
        for record in made:
            got = by_id[record.id]
            assert (got.queue, got.priority, got.handler) == (
                record.queue,
                record.priority,
                record.handler,
            )
            assert got.state is JobState.RUNNING and got.locked_by == "w1"
            assert got.lock_token and got.lock_expires_at is not None
            assert got.locked_at is not None and got.lock_expires_at > got.locked_at
    finally:
        adapter.close()
