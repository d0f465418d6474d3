"""The adapter contract on a real PostgreSQL, plus the many-process claim test.

Each test gets a fresh schema, dropped afterwards, so tests never see each other's jobs.
"""

from __future__ import annotations

import functools
import os
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from queuebox.backends import from_url
from queuebox.backends.postgres import PostgresAdapter
from queuebox.testing import AdapterContract, AdapterFactory, new_job

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    schema = f"qb_test_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def pg_url(postgres_url: str, pg_schema: str) -> str:
    return f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={pg_schema}"


class TestPostgresAdapter(AdapterContract):
    @pytest.fixture
    def adapter_factory(self, pg_url: str) -> AdapterFactory:
        return lambda: from_url(pg_url)


# -- many processes, many jobs --------------------------------------------------------------


def _worker(url: str, log: Path) -> None:
    adapter = PostgresAdapter(url)
    worker = f"proc-{os.getpid()}"
    idle = 0
    with log.open("w") as out:
        while idle < 3:
            jobs = adapter.claim(worker, None, limit=10, lease=60)
            if not jobs:
                idle += 1
                time.sleep(0.05)
                continue
            idle = 0
            out.write("".join(f"{job.id}\n" for job in jobs))
            results = adapter.complete_many([(job.id, job.lock_token or "") for job in jobs])
            assert all(results), f"lost locks while completing {jobs!r}"
    adapter.close()


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


def test_four_processes_claim_5000_jobs_each_exactly_once(pg_url: str, tmp_path: Path) -> None:
    total = 5000
    with PostgresAdapter(pg_url) as adapter:
        records = adapter.schedule([new_job(f"q{i % 4}", 1 + i % 10) for i in range(total)])
        logs = [tmp_path / f"w{n}.log" for n in range(4)]
        started = time.monotonic()
        pids = [
            _fork(functools.partial(_worker, pg_url, log), log.with_suffix(".err")) for log in logs
        ]
        for pid, log in zip(pids, logs, strict=True):
            _, status = os.waitpid(pid, 0)
            error = log.with_suffix(".err")
            assert os.waitstatus_to_exitcode(status) == 0, error.exists() and error.read_text()
        elapsed = time.monotonic() - started
        claimed = [line for log in logs for line in log.read_text().split()]
        assert len(claimed) == total and len(set(claimed)) == total
        assert set(claimed) == {record.id for record in records}
        assert all(log.read_text() for log in logs), "every process should have claimed work"
        assert adapter.counts() == []
        print(f"4 processes claimed and completed {total} jobs in {elapsed:.2f}s")
