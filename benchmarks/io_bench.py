"""``python -m benchmarks.io_bench``: jobs that wait 20 ms, drained by ONE worker process.

queuebox at ``-c 32`` with sync jobs (``time.sleep`` on its threads) and async jobs
(``asyncio.sleep`` on its loop) on every store given, async jobs at each ``--sweep``
concurrency on the ``--sweep-stores``, and (``--peers``) the peers in their own concurrent
modes, all in one run: each round runs every subject once, in the same order, and the table
gives the median of the rounds. See docs/benchmarks.md, "I/O jobs".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.io_report import evaluate_io, render_io, rows
from benchmarks.peers import PEERS
from benchmarks.runner import interpreter_for, machine, run_driver, wait_until_idle
from benchmarks.stores import DEFAULT_URLS
from benchmarks.subject import REPO

__all__ = ["main"]

STORES = ("redis", "postgres", "sqlite")
#: The peers and why each runs as it does (their I/O settings are in benchmarks/peers).
IO_PEERS = ("dramatiq", "huey", "celery", "arq", "saq", "procrastinate", "rq")
#: Enough jobs for many waves at every concurrency: at least this many per job in flight.
WAVES = 25


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.io_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (CI)")
    parser.add_argument("--stores", default=",".join(STORES), help="redis,postgres,sqlite")
    parser.add_argument("--sweep", default="50,100,200,400,800", help="async concurrencies")
    parser.add_argument("--sweep-stores", default="redis", help="stores swept (redis)")
    parser.add_argument("--peers", action="store_true", help="also run the installed peers")
    parser.add_argument("--only-peers", default="", help="comma-separated subset of peers")
    parser.add_argument("-n", type=int, help="jobs per drain (10,000; more at high concurrency)")
    parser.add_argument("--rounds", type=int, help="rounds; the table gives medians (3)")
    parser.add_argument("--max-seconds", type=float, help="cap on one drain (15 s)")
    parser.add_argument(
        "--idle",
        type=float,
        default=0.0,
        help="before each drain, wait until the CPUs were at most this busy (0..1; 0: never)",
    )
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/io.json")
    parser.add_argument(
        "--redis-url", default=os.environ.get("QUEUEBOX_BENCH_REDIS_URL", DEFAULT_URLS["redis"])
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("QUEUEBOX_BENCH_POSTGRES_URL", DEFAULT_URLS["postgres"]),
    )
    args = parser.parse_args(argv)
    args.n = args.n or (200 if args.quick else 10_000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.max_seconds = args.max_seconds or (5.0 if args.quick else 15.0)
    args.stores = _names(parser, args.stores, STORES, "store")
    args.sweep_stores = _names(parser, args.sweep_stores, STORES, "store")
    try:
        args.sweep = [int(c) for c in args.sweep.split(",") if c]
    except ValueError:
        parser.error(f"--sweep {args.sweep!r}: give concurrencies such as 100,200,400")
    if any(c < 1 for c in args.sweep) or args.n < 1 or args.rounds < 1:
        parser.error("-n, --rounds and every --sweep concurrency must be at least 1")
    args.only_peers = _names(parser, args.only_peers, IO_PEERS, "peer") or list(IO_PEERS)
    return args


def _names(parser: argparse.ArgumentParser, text: str, known: tuple[str, ...], what: str) -> Any:
    names = [name for name in text.split(",") if name]
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"unknown {what}(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return names


def subjects(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """``(spec, interpreter, jobs)`` of every subject, in the order each round runs them."""
    planned: list[tuple[str, str, int]] = []
    for store in args.stores:
        for kind in ("sync", "async"):
            planned.append((f"io:queuebox:{store}:{kind}:32", sys.executable, args.n))
        if store in args.sweep_stores:
            for concurrency in args.sweep:
                jobs = max(args.n, WAVES * concurrency)
                planned.append((f"io:queuebox:{store}:async:{concurrency}", sys.executable, jobs))
    if args.peers:
        for name in args.only_peers:
            if PEERS[name].store not in args.stores:
                continue
            python, reason = interpreter_for(name)
            if python is None:
                print(f"  peer {name}: skipped: {reason}", file=sys.stderr)
                planned.append((f"io:{name}", "", 0))
                continue
            planned.append((f"io:{name}", python, args.n))
    return planned


def main(argv: list[str] | None = None) -> int:
    args = _options(argv)
    started = time.monotonic()
    planned = subjects(args)
    print(
        f"queuebox I/O benchmark: {len(planned)} subjects x {args.rounds} rounds, n={args.n}",
        file=sys.stderr,
    )
    results: list[dict[str, Any]] = []
    for round_number in range(1, args.rounds + 1):
        for spec, python, jobs in planned:
            if not python:
                if round_number == 1:
                    results.append({"spec": spec, "error": "skipped: not installed"})
                continue
            busy = wait_until_idle(args.idle)
            result = run_driver(
                python,
                spec,
                [
                    "-n",
                    str(jobs),
                    "--max-seconds",
                    str(args.max_seconds),
                    "--redis-url",
                    args.redis_url,
                    "--postgres-url",
                    args.postgres_url,
                ],
                label=f"round {round_number}: {spec}",
            )
            result["round"], result["machine_busy_before"] = round_number, busy
            results.append(result)
    table_rows = rows(results)
    targets, ratios = evaluate_io(table_rows)
    if args.quick:
        # A few hundred jobs and one round: the machinery runs, the figures mean nothing.
        targets = []
        ratios = [
            f"quick mode: {args.n} jobs per drain, {args.rounds} round(s): this checks that "
            "every subject runs; at this size the rates are not measurements, so no target "
            "is judged (run without --quick for figures)"
        ]
    print(render_io(table_rows, targets, ratios))
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"- {r['spec']}: {str(r['error'])[:300]}")
    document = {
        "suite": "queuebox I/O benchmark",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": time.monotonic() - started,
        "machine": machine(),
        "options": {
            "quick": args.quick,
            "n": args.n,
            "rounds": args.rounds,
            "stores": args.stores,
            "sweep": args.sweep,
            "sweep_stores": args.sweep_stores,
            "peers": args.peers,
            "idle": args.idle,
        },
        "results": results,
        "rows": table_rows,
        "targets": targets,
        "ratios": ratios,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2))
    print(f"results written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
