"""``python -m benchmarks.flow_claim``: what flow control costs the SQLite and PostgreSQL
claims (``--stores sqlite,postgres``; PostgreSQL at ``QUEUEBOX_BENCH_POSTGRES_URL`` or
127.0.0.1:5432/test, in a schema of its own that is dropped afterwards).

Two measurements, each on a fresh database file or schema, in this process (no workers: the
store's own claim and ack, as a worker loop runs them):

* **held back**: ``claim(limit=1)`` + ``complete`` of free jobs (priority 99) with none,
  and with ``--held`` (10,000) jobs of one key at its limit ahead of them (priority 1,
  ``max_concurrency=1``, one running): median microseconds per claim, and SQLite VM steps
  (PostgreSQL: shared buffers the claim statement reads, from ``EXPLAIN (ANALYZE, BUFFERS)``
  of the same statement in a rolled-back transaction).
* **drain**: a no-op drain of ``-n`` unlimited jobs (``claim(limit=--batch)`` then
  ``complete_many``) with and without a limited job class present in the queue (100 jobs
  of a key at its limit), in alternating rounds; jobs/s medians and their ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from queuebox.backends.base import Adapter
from queuebox.backends.sqlite import SQLiteAdapter
from queuebox.testing.flow import limited_job
from queuebox.testing.support import new_job

LEASE = 300.0
POSTGRES_URL = os.environ.get("QUEUEBOX_BENCH_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")

#: A fresh store of one kind, by name: ``open(name)`` yields it, and removes it afterwards.
Opener = Callable[[str], contextlib.AbstractContextManager[Adapter]]


def sqlite_opener(folder: Path) -> Opener:
    @contextlib.contextmanager
    def open_store(name: str) -> Iterator[Adapter]:
        path = folder / f"{name}.db"
        store = SQLiteAdapter(path)
        try:
            yield store
        finally:
            store.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

    return open_store


@contextlib.contextmanager
def postgres_opener_for(url: str = POSTGRES_URL) -> Iterator[Opener]:
    import psycopg  # noqa: PLC0415 - only the PostgreSQL measurement needs it

    from queuebox.backends.postgres import PostgresAdapter  # noqa: PLC0415

    made: list[str] = []

    @contextlib.contextmanager
    def open_store(name: str) -> Iterator[Adapter]:
        schema = f"qb_flowbench_{uuid.uuid4().hex[:10]}"
        made.append(schema)
        store = PostgresAdapter(url, schema=schema)
        try:
            yield store
        finally:
            store.close()

    try:
        yield open_store
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            for schema in made:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # our own names


def _hold(store: Adapter, count: int) -> None:
    for start in range(0, count, 5000):
        size = min(5000, count - start)
        store.schedule([limited_job("full", priority=1, max_concurrency=1) for _ in range(size)])
    [running] = store.claim("holder", None, limit=1, lease=LEASE)
    assert running.limit_key == "full"


def _one_claim(store: Adapter) -> tuple[float, int]:
    """Seconds of one claim of one free job (then acked), and its cost in the store's unit."""
    if not isinstance(store, SQLiteAdapter):
        cost = _postgres_buffers(store)
        started = time.perf_counter()
        [job] = store.claim("w", None, limit=1, lease=LEASE)
        elapsed = time.perf_counter() - started
        store.complete(job.id, job.lock_token or "")
        return elapsed, cost
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    connections: Any = store._connections
    with connections.use() as connection:
        connection.set_progress_handler(tick, 100)
        started = time.perf_counter()
        try:
            [job] = store.claim("w", None, limit=1, lease=LEASE)
        finally:
            elapsed = time.perf_counter() - started
            connection.set_progress_handler(None, 100)
    store.complete(job.id, job.lock_token or "")
    return elapsed, steps[0] * 100


def _postgres_buffers(store: Any) -> int:
    """Shared buffers the claim statement that would run now reads (rolled back)."""
    from psycopg import sql  # noqa: PLC0415

    params: dict[str, Any] = {"worker_id": "w", "queues": None, "limit": 1}
    params |= {"lease": LEASE, "nonce": "n"}
    with store._session() as conn, conn.transaction(force_rollback=True):
        found = conn.execute(store.query("any_limited"), params).fetchone()["found"]
        name = "claim"
        if found:  # the two statements of claim_limited, the second one explained
            conn.execute(store.query("lock_limit_keys"), params)
            name = "claim_held_keys"
        explain = sql.SQL("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ") + store.query(name)
        [plan] = conn.execute(explain, params).fetchone().values()
    top = (plan if isinstance(plan, list) else json.loads(plan))[0]["Plan"]
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"])


def held_back(open_store: Opener, held: int, claims: int) -> dict[str, tuple[float, int]]:
    results = {}
    for label, count in (("none held", 0), (f"{held} held", held)):
        with open_store(f"held-{count}") as store:
            if count:
                _hold(store, count)
            store.schedule([new_job(priority=99) for _ in range(claims + 10)])
            samples = [_one_claim(store) for _ in range(claims)]
        results[label] = (
            statistics.median(s[0] for s in samples) * 1e6,
            int(statistics.median(s[1] for s in samples)),
        )
    return results


def _drain(open_store: Opener, name: str, n: int, batch: int, limited: bool) -> float:
    with open_store(name) as store:
        if limited:
            _hold(store, 100)
        for start in range(0, n, 5000):
            store.schedule([new_job() for _ in range(min(5000, n - start))])
        started = time.perf_counter()
        done = 0
        while done < n:
            jobs = store.claim("w", None, limit=batch, lease=LEASE)
            jobs = [job for job in jobs if job.limit_key is None]
            store.complete_many([(job.id, job.lock_token or "") for job in jobs])
            done += len(jobs)
        return n / (time.perf_counter() - started)


def drain(open_store: Opener, n: int, batch: int, rounds: int) -> dict[str, float]:
    rates: dict[str, list[float]] = {"plain": [], "limited present": []}
    for number in range(rounds):
        order = [False, True] if number % 2 == 0 else [True, False]
        for limited in order:
            rate = _drain(open_store, f"drain-{number}-{limited}", n, batch, limited)
            rates["limited present" if limited else "plain"].append(rate)
    return {label: statistics.median(values) for label, values in rates.items()}


def _report(kind: str, open_store: Opener, args: argparse.Namespace) -> None:
    unit = "VM steps" if kind == "SQLite" else "buffers"
    print(f"claim(limit=1) + complete of a free job, {kind}:")
    for label, (micros, cost) in held_back(open_store, args.held, args.claims).items():
        print(f"  {label:>12}: {micros:8.0f} us median, {cost:7d} {unit}")
    print(f"no-op drain of {args.n} unlimited jobs (claim limit {args.batch}), {kind}:")
    rates = drain(open_store, args.n, args.batch, args.rounds)
    for label, rate in rates.items():
        print(f"  {label:>16}: {rate:8.0f} jobs/s (median of {args.rounds})")
    print(f"  ratio limited/plain: {rates['limited present'] / rates['plain']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held", type=int, default=10_000, help="held-back jobs (10,000)")
    parser.add_argument("--claims", type=int, default=200, help="claims timed (200)")
    parser.add_argument("-n", type=int, default=10_000, help="jobs per drain (10,000)")
    parser.add_argument("--batch", type=int, default=10, help="claim limit in the drain (10)")
    parser.add_argument("--rounds", type=int, default=5, help="drain rounds (5)")
    parser.add_argument("--stores", default="sqlite", help="sqlite,postgres (sqlite)")
    args = parser.parse_args()
    stores = args.stores.split(",")
    unknown = set(stores) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown store {sorted(unknown)[0]!r}: use sqlite and/or postgres")
    if "sqlite" in stores:
        with tempfile.TemporaryDirectory() as folder:
            _report("SQLite", sqlite_opener(Path(folder)), args)
    if "postgres" in stores:
        with postgres_opener_for() as open_store:
            _report("PostgreSQL", open_store, args)


if __name__ == "__main__":
    main()
