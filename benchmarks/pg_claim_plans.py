"""``python -m benchmarks.pg_claim_plans``: the PostgreSQL plain claim as the function
``<table>_claim`` (schema version 7, generic plans kept for the session) against the same
claim as one statement sent as text (``claim_statement``: parsed and planned on every call).

One session runs both, alternating, on the same table in each of its states: empty; ``--jobs``
due jobs of four queues with spread priorities, before and after ``ANALYZE``; every job moved
to tomorrow, before and after ``ANALYZE``. Each claim runs in a transaction that is rolled
back, so every claim sees the same table. A cell is the median of ``--rounds`` claims, in
milliseconds, for ``limit`` 1, 10 and 100 and for every queue, one queue and two queues.
PostgreSQL at ``QUEUEBOX_BENCH_POSTGRES_URL`` or 127.0.0.1:5432/test, in a schema of its own
that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time
import uuid
from typing import Any

import psycopg
from psycopg import sql

from queuebox.backends.postgres import PostgresAdapter

POSTGRES_URL = os.environ.get("QUEUEBOX_BENCH_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
SHAPES: tuple[tuple[str, list[str] | None], ...] = (
    ("every queue", None),
    ("one queue", ["q1"]),
    ("two queues", ["q1", "q2"]),
)
LIMITS = (1, 10, 100)


def _median_ms(
    conn: psycopg.Connection[Any], query: Any, params: dict[str, Any], rounds: int
) -> float:
    times = []
    for _ in range(rounds):
        with conn.transaction(force_rollback=True):
            started = time.perf_counter()
            conn.execute(query, {**params, "nonce": secrets.token_hex(16)}).fetchall()
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def _row(conn: psycopg.Connection[Any], query: Any, rounds: int) -> list[float]:
    cells = []
    for _, queues in SHAPES:
        for limit in LIMITS:
            params = {"worker_id": "bench", "queues": queues, "limit": limit, "lease": 60.0}
            cells.append(_median_ms(conn, query, params, rounds))
    return cells


def _states(
    admin: psycopg.Connection[Any], jobs: sql.Identifier, count: int
) -> list[tuple[str, Any]]:
    fill = sql.SQL(
        "INSERT INTO {} (name, handler, queue, priority, run_at)"
        " SELECT 'J', '{{}}', 'q' || g %% 4, 1 + g %% 100, now() - g * interval '1 ms'"
        " FROM generate_series(1, %s) AS g"
    ).format(jobs)
    analyze = sql.SQL("ANALYZE {}").format(jobs)
    later = sql.SQL("UPDATE {} SET run_at = now() + interval '1 day'").format(jobs)
    return [
        ("empty", lambda: None),
        (f"{count:,} due, not analyzed", lambda: admin.execute(fill, [count])),
        (f"{count:,} due, analyzed", lambda: admin.execute(analyze)),
        (f"{count:,} for tomorrow, not analyzed", lambda: admin.execute(later)),
        (f"{count:,} for tomorrow, analyzed", lambda: admin.execute(analyze)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs in the table")
    parser.add_argument("--rounds", type=int, default=8, help="claims per cell")
    args = parser.parse_args()
    schema = f"qb_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        adapter = PostgresAdapter(POSTGRES_URL, schema=schema)
        try:
            adapter.migrate()
            statement, function = adapter.query("claim_statement"), adapter.query("claim")
            jobs = sql.Identifier(schema, "queuebox_jobs")
            header = " / ".join(f"{name} ({','.join(map(str, LIMITS))})" for name, _ in SHAPES)
            print(f"median ms per claim, limit {LIMITS}, for: {header}")
            with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
                for state, change in _states(admin, jobs, args.jobs):
                    change()
                    text, call = (
                        _row(conn, statement, args.rounds),
                        _row(conn, function, args.rounds),
                    )
                    ratio = sum(call) / sum(text)
                    print(f"{state}:")
                    print("  text     " + " ".join(f"{cell:5.1f}" for cell in text))
                    print("  function " + " ".join(f"{cell:5.1f}" for cell in call))
                    print(f"  function/text, sum of the cells: {ratio:.2f}")
        finally:
            adapter.close()
            admin.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


if __name__ == "__main__":
    main()
