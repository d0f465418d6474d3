"""Faults of the stores themselves: Redis restarted and its script cache flushed, PostgreSQL
connections terminated, SQLite write contention, and malformed records written straight into
each store."""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from queuebox import from_url
from queuebox.backends.base import JobState
from queuebox.backends.redis import RedisAdapter
from queuebox.errors import PayloadError, StorageUnavailable

from .conftest import (
    Project,
    RedisServer,
    Store,
    new_jobs,
    raw_job,
    runs_by_job,
    scale,
    wait_until,
)

pytestmark = pytest.mark.chaos


def _empty(store: Store) -> bool:
    try:
        return store.is_empty()
    except StorageUnavailable:
        return False


def _all_ran(project: Project, ids: list[str]) -> bool:
    return set(ids) <= set(runs_by_job(project.ledger()))


# -- Redis: restarts and SCRIPT FLUSH -----------------------------------------------------------


@pytest.mark.timeout(scale(120, 600))
def test_redis_restarts_and_script_flushes_lose_nothing(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    import redis

    url = f"{redis_server.url}?prefix=chaos"
    store = Store("redis", url, from_url(url))
    jobs = scale(1500, 6000)
    with Project(tmp_path, store) as project:
        project.configure(lease=3.0, batch_size=5, sleep_delay=0.5, max_attempts=50)
        ids = [r.id for r in store.adapter.schedule(new_jobs("Note", [0.02], jobs))]
        workers = [project.worker(name=f"w{i}") for i in range(4)]
        stop = threading.Event()
        flushes = 0

        def flush_scripts() -> None:
            nonlocal flushes
            rng = random.Random(3)
            while not stop.wait(rng.uniform(0.2, 1.0)):
                with contextlib.suppress(redis.RedisError):
                    redis.Redis(port=redis_server.port, socket_timeout=2).script_flush()
                    flushes += 1

        flusher = threading.Thread(target=flush_scripts, daemon=True)
        flusher.start()
        try:
            # Restart when a quarter and when 60% of the jobs have run: once killed outright
            # (the AOF, fsynced on every write, is all that survives), once shut down cleanly.
            for share, how in ((0.25, signal.SIGKILL), (0.6, signal.SIGTERM)):
                wait_until(
                    lambda share=share: len(runs_by_job(project.ledger())) >= share * jobs,  # type: ignore[misc]
                    60,
                    f"{share:.0%} of the jobs",
                )
                redis_server.restart(how, down_for=1.0)
            wait_until(lambda: _all_ran(project, ids), scale(90, 500), "every job to run")
            wait_until(lambda: _empty(store), 30, "the store to be empty")
        finally:
            stop.set()
            flusher.join()
        assert redis_server.restarts == 2 and flushes > 0
        assert all(worker.alive() for worker in workers), project.logs()
        logs = project.logs()
        assert "the store is unreachable" in logs and "reachable again" in logs, logs
        assert "Traceback" not in logs, logs
        assert set(project.stop_all().values()) == {0}, project.logs()
        store.adapter.close()
        print(f"\n[chaos] redis: {jobs} jobs, 2 restarts, {flushes} SCRIPT FLUSHes, 0 lost")


# -- PostgreSQL: pg_terminate_backend -----------------------------------------------------------


@pytest.mark.timeout(scale(120, 300))
def test_postgres_terminated_connections_lose_nothing(
    postgres_store: Store, tmp_path: Path
) -> None:
    import psycopg

    store = postgres_store
    window = scale(15.0, 60.0)
    with Project(tmp_path, store) as project:
        project.configure(lease=3.0, batch_size=5, sleep_delay=0.5, max_attempts=50)
        ids = [r.id for r in store.adapter.schedule(new_jobs("Note", [0.02], 200))]
        workers = [project.worker(name=f"w{i}") for i in range(4)]
        wait_until(lambda: bool(project.ledger()), 30, "the first job")
        rng = random.Random(5)
        terminated = rounds = 0
        base = store.url.split("?", 1)[0]
        with psycopg.connect(base, autocommit=True, application_name="chaos-killer") as killer:
            ends = time.monotonic() + window
            next_kill = time.monotonic() + rng.uniform(1.0, 3.0)
            while time.monotonic() < ends:
                # Keep the workers busy: a producer enqueues all along (on a connection of
                # its own that is never terminated).
                ids += [r.id for r in store.adapter.schedule(new_jobs("Note", [0.02], 10))]
                if time.monotonic() >= next_kill:
                    rows = killer.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = %s",
                        (store.application_name,),
                    ).fetchall()
                    terminated += sum(1 for (ok,) in rows if ok)
                    rounds += 1
                    next_kill = time.monotonic() + rng.uniform(1.0, 3.0)
                time.sleep(0.2)
        wait_until(lambda: _all_ran(project, ids), 90, "every job to run")
        wait_until(store.is_empty, 30, "the store to be empty")
        assert rounds >= window / 3 and terminated >= rounds, (rounds, terminated)
        assert all(worker.alive() for worker in workers), project.logs()
        logs = project.logs()
        assert "the store is unreachable" in logs, logs
        assert "Traceback" not in logs, logs
        assert set(project.stop_all().values()) == {0}, project.logs()
        print(
            f"\n[chaos] postgres: {len(ids)} jobs, {rounds} rounds of pg_terminate_backend "
            f"({terminated} connections) over {window:.0f}s, 0 lost"
        )


# -- SQLite: four workers and a producer ---------------------------------------------------------

PRODUCER = """
import json, os, sys
sys.path.insert(0, os.getcwd())
import queuebox
queuebox.configure(url={url!r})
from chaos_jobs import Note
ids = [Note.perform_later().id for _ in range({n})]
with open("produced.json", "w") as out:
    json.dump(ids, out)
"""


@pytest.mark.timeout(scale(120, 600))
def test_sqlite_contention_never_reaches_a_caller(sqlite_store: Store, tmp_path: Path) -> None:
    import json

    jobs = scale(1000, 5000)
    with Project(tmp_path, sqlite_store) as project:
        project.configure(batch_size=1, sleep_delay=0.1)
        workers = [project.worker(name=f"w{i}") for i in range(4)]
        producer = project.script(PRODUCER.format(url=sqlite_store.url, n=jobs), "producer")
        assert producer.wait(scale(90, 500)) == 0, producer.output()
        ids = json.loads((tmp_path / "produced.json").read_text())
        wait_until(lambda: _all_ran(project, ids), 60, "every job to run")
        wait_until(sqlite_store.is_empty, 30, "the store to be empty")
        runs = runs_by_job(project.ledger())
        assert all(len(found) == 1 for found in runs.values()), "a job ran twice"
        # Workers that start last may find the queue drained: contention needs two or more.
        assert len({line.pid for found in runs.values() for line in found}) >= 2
        assert all(worker.alive() for worker in workers)
        logs = project.logs()
        for bad in ("locked", "busy", "unreachable", "Traceback"):
            assert bad not in logs, logs
        assert set(project.stop_all().values()) == {0}, project.logs()


# -- malformed records ---------------------------------------------------------------------------

MIB = 1024 * 1024
MALFORMED: list[tuple[str, str, str]] = [
    ("invalid JSON", '{"name": "Note", "args": [', "PayloadError: the stored payload is not valid"),
    ("unknown job", '{"name": "NoSuchJob", "args": []}', "UnknownJob: no job named 'NoSuchJob'"),
    ("not an object", '"Note"', "PayloadError: the stored payload is a JSON str, not an object"),
    ("name not a string", '{"name": 42, "args": []}', "PayloadError: the stored payload has no"),
    ("args not a list", '{"name": "Note", "args": {"a": 1}}', "'args' is a dict, not a list"),
    ("kwargs not a dict", '{"name": "Note", "kwargs": "x"}', "'kwargs' is a str, not an object"),
    ("1 MiB blob", "A" * MIB, "PayloadError: the stored payload is not valid JSON"),
    (
        "1 MiB unknown",
        '{"name": "Huge", "args": ["' + "x" * MIB + '"]}',
        "UnknownJob: no job named 'Huge'",
    ),
    ("escaped NUL", '{"name": "Note\\u0000", "args": []}', "UnknownJob: no job named 'Note\\x00'"),
    (
        "raw NUL",
        '{"name": "Note",\x00 "args": []}',
        "PayloadError: the stored payload is not valid",
    ),
]


@pytest.mark.timeout(90)
def test_malformed_records_fail_at_once(project: Project) -> None:
    project.configure(lease=5.0, sleep_delay=0.3)
    store = project.store.adapter
    good: list[str] = []
    bad: dict[str, tuple[str, str]] = {}
    for label, handler, expected in MALFORMED:
        good += [r.id for r in store.schedule(new_jobs("Note", [], 2))]
        if project.store.kind == "postgres" and "\x00" in handler:
            # PostgreSQL text cannot hold NUL: the store itself refuses the write, with a
            # queuebox error. (The core never writes one: json.dumps escapes NUL as \\u0000.)
            with pytest.raises(PayloadError, match=r"PostgreSQL refused the job's data.*NUL"):
                store.schedule([raw_job(handler)])
            continue
        bad[store.schedule([raw_job(handler)])[0].id] = (label, expected)
    workers = [project.worker(name=f"w{i}") for i in range(2)]

    def settled() -> bool:
        return _all_ran(project, good) and all(
            getattr(store.get(job_id), "state", None) is JobState.FAILED for job_id in bad
        )

    wait_until(settled, 60, "good jobs done and malformed ones failed")
    for job_id, (label, expected) in bad.items():
        failed = store.get(job_id)
        assert failed is not None and failed.attempts == 1, (label, failed)
        assert failed.last_error is not None, label
        assert expected in failed.last_error, (label, failed.last_error)
        assert len(failed.last_error) <= 8192, label
    assert all(worker.alive() for worker in workers), project.logs()
    # A good job writes its ledger line while it runs; its success is recorded a moment
    # later (with the worker's next claim or wait), so wait for the store to hold only the
    # failed records.
    wait_until(
        lambda: [(c.failed, c.total) for c in store.counts()] == [(len(bad), len(bad))],
        10,
        "the store to hold only the failed records",
    )
    assert "Traceback" not in project.logs(), project.logs()
    assert set(project.stop_all().values()) == {0}, project.logs()


@pytest.mark.timeout(60)
def test_redis_record_that_is_not_msgpack(redis_store: Store, tmp_path: Path) -> None:
    store = redis_store
    adapter = store.adapter
    with Project(tmp_path, store) as project:
        project.configure(lease=5.0, sleep_delay=0.3)
        [broken] = adapter.schedule(new_jobs("Note", [], 1, priority=1))
        number = broken.id.rsplit("/", 1)[1]
        assert isinstance(adapter, RedisAdapter)
        client = adapter.client
        client.hset(f"{store.namespace}:{{default}}:jobs", number, b"\xc1 not msgpack")
        good = [r.id for r in adapter.schedule(new_jobs("Note", [], 5))]
        worker = project.worker(name="w0")
        deadline = time.monotonic() + 20
        while not _all_ran(project, good) and time.monotonic() < deadline and worker.alive():
            time.sleep(0.1)
        assert worker.alive(), worker.output()
        assert _all_ran(project, good)
        record = adapter.get(broken.id)
        assert record is not None and record.state is JobState.FAILED
        assert record.last_error is not None
        assert record.last_error.startswith("UnreadableRecord: the stored record of job")
        assert "not msgpack" in record.last_error
        assert [job.id for job in adapter.list_jobs(states=[JobState.FAILED])] == [broken.id]
        assert [(c.failed, c.total) for c in adapter.counts()] == [(1, 1)]
        assert adapter.delete(broken.id)
        assert adapter.counts() == []
