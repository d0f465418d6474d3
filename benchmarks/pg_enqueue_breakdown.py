"""Where the time of one PostgreSQL enqueue goes, against a one-row INSERT.

``python -m benchmarks.pg_enqueue_breakdown [--postgres-url URL] [--calls N]`` times, in
alternating blocks of N calls (the median block of eleven counts), from the cheapest to the
whole, on a schema of its own (removed at the end):

1. a one-row ``INSERT`` of the columns queuebox writes, prepared (psycopg's default) and
   unprepared (as queuebox connects);
2. queuebox's one-row insert statement (``insert_job``) without its ``RETURNING`` clause:
   the same insert, with queuebox's casts, ``coalesce(run_at, now() + delay)`` and key;
3. with ``RETURNING`` of the columns the store decides, without the ``pg_notify``;
4. the whole statement, with the ``pg_notify`` (its cost lands at commit);
5. the whole statement, prepared (``?prepare=on``);
6. ``PostgresAdapter.schedule`` of one prepared job (the adapter's own client work);
7. ``Job.perform_later`` (validation, the JSON payload, the returned record);
8. and 9. the last two with ``?prepare=on``.

Every statement runs in autocommit, so each is its own transaction and commit.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import dict_row

import queuebox
from benchmarks.jobs import BenchNoop
from benchmarks.stores import DEFAULT_URLS, with_query
from queuebox.backends.postgres import PostgresAdapter

__all__ = ["main", "measure"]


def _median_of(
    variants: dict[str, Callable[[], object]], calls: int, rounds: int = 11
) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for n in range(rounds):
        for name in names if n % 2 == 0 else names[::-1]:
            call = variants[name]
            started = time.perf_counter()
            for _ in range(calls):
                call()
            times[name].append((time.perf_counter() - started) / calls * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def measure(server_url: str, calls: int) -> dict[str, float]:
    """Microseconds per call of each step."""
    schema = f"qbbreak_{secrets.token_hex(4)}"
    adapter = PostgresAdapter(server_url, schema=schema)
    prepared_adapter = PostgresAdapter(with_query(server_url, schema=schema, prepare="on"))
    plain = psycopg.connect(server_url, autocommit=True, row_factory=dict_row)
    unprepared = psycopg.connect(
        server_url, autocommit=True, prepare_threshold=None, row_factory=dict_row
    )
    try:
        queuebox.configure(adapter=adapter)
        BenchNoop.perform_later(0)  # creates the schema
        job = BenchNoop.set()._new_job((1,), {})
        table = f"{schema}.{adapter.table}"
        raw = (
            f"INSERT INTO {table} (name, handler, queue, priority, run_at, created_at, "  # noqa: S608
            "updated_at) VALUES (%s, %s, %s, %s, now(), now(), now())"
        )
        raw_args = (job.name, job.handler, job.queue, job.priority)
        whole = adapter.query("insert_job").as_bytes(plain)
        bare, _, returning = whole.rpartition(b"RETURNING")  # the clause, not a comment
        columns = returning.split(b",\n")[0]  # the columns, without the pg_notify
        params = adapter._job_params([job])
        steps: dict[str, Callable[[], Any]] = {
            "1a INSERT, prepared": lambda: plain.execute(raw, raw_args),
            "1b INSERT, unprepared": lambda: unprepared.execute(raw, raw_args),
            "2 insert_job without RETURNING": lambda: unprepared.execute(bare, params),
            "3 + RETURNING (no pg_notify)": lambda: unprepared.execute(
                bare + b"RETURNING" + columns, params
            ).fetchall(),
            "4 + pg_notify: insert_job": lambda: unprepared.execute(whole, params).fetchall(),
            "5 insert_job, prepared": lambda: plain.execute(whole, params, prepare=True).fetchall(),
            "6 PostgresAdapter.schedule": lambda: adapter.schedule([job]),
            "7 Job.perform_later": lambda: BenchNoop.perform_later(1),
        }

        prepared_job: type[BenchNoop] = type(
            "BenchNoopPrepared", (BenchNoop,), {"adapter": prepared_adapter}
        )
        steps["8 schedule, ?prepare=on"] = lambda: prepared_adapter.schedule([job])
        steps["9 Job.perform_later, ?prepare=on"] = lambda: prepared_job.perform_later(1)
        for call in steps.values():  # warm up: connect, compose, prepare
            for _ in range(10):
                call()
        return _median_of(steps, calls)
    finally:
        for conn in (plain, unprepared):
            conn.close()
        prepared_adapter.close()
        adapter.close()
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pg_enqueue_breakdown", description=__doc__
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("QUEUEBOX_BENCH_POSTGRES_URL", DEFAULT_URLS["postgres"]),
    )
    parser.add_argument("--calls", type=int, default=300, help="calls per block")
    args = parser.parse_args(argv)
    result = measure(args.postgres_url, args.calls)
    base = result["1b INSERT, unprepared"]
    print(f"one PostgreSQL enqueue, microseconds per call (median of 11 blocks of {args.calls})")
    previous = None
    for name, micros in result.items():
        step = "" if previous is None else f"{micros - previous:+8.1f}"
        print(f"{name:<34} {micros:8.1f} {step:>9}   {micros / base:5.2f}x unprepared INSERT")
        previous = micros
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
