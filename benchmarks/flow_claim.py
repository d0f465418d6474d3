"""``python -m benchmarks.flow_claim``: what flow control costs the SQLite claim.

Two measurements, each on a fresh database file, in this process (no workers: the store's
own claim and ack, as a worker loop runs them):

* **held back**: ``claim(limit=1)`` + ``complete`` of free jobs (priority 99) with none,
  and with ``--held`` (10,000) jobs of one key at its limit ahead of them (priority 1,
  ``max_concurrency=1``, one running): median microseconds and SQLite VM steps per claim.
* **drain**: a no-op drain of ``-n`` unlimited jobs (``claim(limit=--batch)`` then
  ``complete_many``) with and without a limited job class present in the queue (100 jobs
  of a key at its limit), in alternating rounds; jobs/s medians and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from queuebox.backends.sqlite import SQLiteAdapter
from queuebox.testing.flow import limited_job
from queuebox.testing.support import new_job

LEASE = 300.0


def _hold(store: SQLiteAdapter, count: int) -> None:
    for start in range(0, count, 5000):
        size = min(5000, count - start)
        store.schedule([limited_job("full", priority=1, max_concurrency=1) for _ in range(size)])
    [running] = store.claim("holder", None, limit=1, lease=LEASE)
    assert running.limit_key == "full"


def _one_claim(store: SQLiteAdapter) -> tuple[float, int]:
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


def held_back(folder: Path, held: int, claims: int) -> dict[str, tuple[float, int]]:
    results = {}
    for label, count in (("none held", 0), (f"{held} held", held)):
        store = SQLiteAdapter(folder / f"held-{count}.db")
        try:
            if count:
                _hold(store, count)
            store.schedule([new_job(priority=99) for _ in range(claims + 10)])
            samples = [_one_claim(store) for _ in range(claims)]
        finally:
            store.close()
        results[label] = (
            statistics.median(s[0] for s in samples) * 1e6,
            int(statistics.median(s[1] for s in samples)),
        )
    return results


def _drain(path: Path, n: int, batch: int, limited: bool) -> float:
    store = SQLiteAdapter(path)
    try:
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
    finally:
        store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def drain(folder: Path, n: int, batch: int, rounds: int) -> dict[str, float]:
    rates: dict[str, list[float]] = {"plain": [], "limited present": []}
    for number in range(rounds):
        order = [False, True] if number % 2 == 0 else [True, False]
        for limited in order:
            rate = _drain(folder / f"drain-{number}-{limited}.db", n, batch, limited)
            rates["limited present" if limited else "plain"].append(rate)
    return {label: statistics.median(values) for label, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held", type=int, default=10_000, help="held-back jobs (10,000)")
    parser.add_argument("--claims", type=int, default=200, help="claims timed (200)")
    parser.add_argument("-n", type=int, default=10_000, help="jobs per drain (10,000)")
    parser.add_argument("--batch", type=int, default=10, help="claim limit in the drain (10)")
    parser.add_argument("--rounds", type=int, default=5, help="drain rounds (5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print("claim(limit=1) + complete of a free job, SQLite:")
        for label, (micros, steps) in held_back(Path(folder), args.held, args.claims).items():
            print(f"  {label:>12}: {micros:8.0f} us median, {steps:7d} VM steps")
        print(f"no-op drain of {args.n} unlimited jobs (claim limit {args.batch}), SQLite:")
        rates = drain(Path(folder), args.n, args.batch, args.rounds)
        for label, rate in rates.items():
            print(f"  {label:>16}: {rate:8.0f} jobs/s (median of {args.rounds})")
        print(f"  ratio limited/plain: {rates['limited present'] / rates['plain']:.3f}")


if __name__ == "__main__":
    main()
