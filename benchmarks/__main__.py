"""``python -m benchmarks``: run the suite and print, save and (``--plot``) draw the results.

Each subject (queuebox on a store at a setting, a peer at a setting, a raw baseline, the
claim-cost sweep of a store) runs in its own driver process; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.peers import PEERS
from benchmarks.report import evaluate, render
from benchmarks.runner import interpreter_for, machine, run_driver
from benchmarks.stores import DEFAULT_URLS
from benchmarks.subject import REPO

STORES = ("sqlite", "postgres", "redis")
FULL_DEPTHS = "1000,10000,100000,1000000"
QUICK_DEPTHS = "1000,10000"


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI (< 1 min)")
    parser.add_argument("--stores", default=",".join(STORES), help="sqlite,postgres,redis")
    parser.add_argument("--peers", action="store_true", help="also run the installed peers")
    parser.add_argument("--only-peers", default="", help="comma-separated subset of peers")
    parser.add_argument("-n", type=int, help="jobs per drain and bulk enqueue (10,000)")
    parser.add_argument("--probes", type=int, help="latency probes, 10 ms apart (200)")
    parser.add_argument("--depths", help=f"claim-cost queue depths ({FULL_DEPTHS})")
    parser.add_argument("--max-seconds", type=float, help="cap on one drain (15 s)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/latest.json")
    parser.add_argument("--plot", action="store_true", help="draw PNG charts beside the JSON")
    parser.add_argument(
        "--redis-url", default=os.environ.get("QUEUEBOX_BENCH_REDIS_URL", DEFAULT_URLS["redis"])
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("QUEUEBOX_BENCH_POSTGRES_URL", DEFAULT_URLS["postgres"]),
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.n = args.n or (1000 if quick else 10_000)
    args.probes = args.probes or (20 if quick else 200)
    args.depths = args.depths or (QUICK_DEPTHS if quick else FULL_DEPTHS)
    args.max_seconds = args.max_seconds or (3.0 if quick else 15.0)
    args.stores = [s for s in args.stores.split(",") if s]
    unknown = set(args.stores) - set(STORES)
    if unknown:
        parser.error(f"unknown store(s) {', '.join(sorted(unknown))}; known: {', '.join(STORES)}")
    return args


def _driver_argv(args: argparse.Namespace, extra: list[str]) -> list[str]:
    return [
        "-n",
        str(args.n),
        "--enqueue-n",
        str(args.n),
        "--probes",
        str(args.probes),
        "--max-seconds",
        str(args.max_seconds),
        "--depths",
        args.depths,
        "--rounds",
        "50" if args.quick else "200",
        "--redis-url",
        args.redis_url,
        "--postgres-url",
        args.postgres_url,
        *extra,
    ]


def _run_driver(
    python: str, spec: str, args: argparse.Namespace, extra: list[str]
) -> dict[str, Any]:
    return run_driver(python, spec, _driver_argv(args, extra))


def _quick_note(args: argparse.Namespace) -> str:
    return (
        f"QUICK MODE: {args.n:,} jobs per drain, {args.probes} latency probes, claim-cost "
        f"depths {args.depths}. This checks that every workload runs and writes its "
        "results. A drain this small lasts a fraction of a second, so the rates, ratios and "
        "CPU shares below are not measurements, and the speed targets are not judged: only "
        "the few that hold at any size are. For figures, run without --quick (see "
        "docs/benchmarks.md)."
    )


def main(argv: list[str] | None = None) -> int:
    args = _options(argv)
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    settings = ("fastest",) if args.quick else ("default", "fastest")
    print(f"queuebox benchmarks: stores {', '.join(args.stores)}, n={args.n}", file=sys.stderr)
    for store in args.stores:
        for setting in settings:
            procs = "1,2,4" if store == "sqlite" else "1,2"
            results.append(
                _run_driver(sys.executable, f"queuebox:{store}:{setting}", args, ["--procs", procs])
            )
        results.append(_run_driver(sys.executable, f"claim:{store}", args, []))
        if store != "sqlite":
            results.append(_run_driver(sys.executable, f"baseline:{store}", args, []))
    if args.peers:
        wanted = [p for p in args.only_peers.split(",") if p] or list(PEERS)
        for name in wanted:
            peer = PEERS[name]
            if peer.store not in args.stores:
                continue
            python, reason = interpreter_for(name)
            if python is None:
                print(f"  peer {name}: skipped: {reason}", file=sys.stderr)
                results.append({"spec": f"peer:{name}", "error": f"skipped: {reason}"})
                continue
            for setting in settings:
                results.append(_run_driver(python, f"peer:{name}:{setting}", args, []))
    targets, ratios = evaluate(results, quick=args.quick)
    report = render(results, targets, ratios, quick_note=_quick_note(args) if args.quick else "")
    print(report)
    document = {
        "suite": "queuebox benchmarks",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": time.monotonic() - started,
        "machine": machine(),
        "options": {
            "quick": args.quick,
            "n": args.n,
            "probes": args.probes,
            "depths": [int(d) for d in args.depths.split(",")],
            "max_seconds": args.max_seconds,
            "stores": args.stores,
            "peers": args.peers,
        },
        "results": results,
        "targets": targets,
        "ratios": ratios,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2))
    print(f"results written to {args.json}", file=sys.stderr)
    if args.plot:
        try:
            from benchmarks.plot import plot  # noqa: PLC0415

            for path in plot(results, args.json.parent):
                print(f"chart written to {path}", file=sys.stderr)
        except ImportError:
            print("--plot needs matplotlib: pip install 'queuebox[bench-plot]'", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
