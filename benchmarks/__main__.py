"""``python -m benchmarks``: run the suite and print, save and (``--plot``) draw the results.

Each subject (queuebox on a store at a setting, a peer at a setting, a raw baseline, the
claim-cost sweep of a store) runs in its own driver process; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.peers import PEERS, PEERS_VENV
from benchmarks.report import evaluate, render
from benchmarks.stores import DEFAULT_URLS
from benchmarks.subject import REPO, python_env

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


def _interpreter_for(module: str) -> tuple[str | None, str]:
    """The first interpreter that imports ``module``: this one, then the peers venv."""
    candidates = [sys.executable, str(PEERS_VENV / "bin" / "python")]
    for python in candidates:
        if not Path(python).exists():
            continue
        probe = subprocess.run(
            [python, "-c", f"import {module}"], capture_output=True, check=False, timeout=60
        )
        if probe.returncode == 0:
            return python, ""
    return None, f"{module} is not installed (pip install queuebox[bench-peers], see docs)"


def _run_driver(
    python: str, spec: str, args: argparse.Namespace, extra: list[str]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="queuebox-bench-") as scratch:
        out = Path(scratch) / "result.json"
        argv = [
            python,
            "-m",
            "benchmarks.driver",
            spec,
            "--out",
            str(out),
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
        started = time.monotonic()
        print(f"  {spec} ...", end="", flush=True, file=sys.stderr)
        completed = subprocess.run(
            argv,
            cwd=REPO,
            env={**os.environ, **python_env()},
            capture_output=True,
            check=False,
            timeout=900,
        )
        print(f" {time.monotonic() - started:.0f}s", file=sys.stderr)
        if out.exists():
            result: dict[str, Any] = json.loads(out.read_text())
        else:
            tail = completed.stderr.decode(errors="replace")[-1500:]
            result = {"spec": spec, "error": f"the driver exited {completed.returncode}: {tail}"}
    if "error" in result:
        print(f"    failed: {result['error'][:300]}", file=sys.stderr)
    return result


def _machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
    }


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
            python, reason = _interpreter_for(name)
            if python is None:
                print(f"  peer {name}: skipped: {reason}", file=sys.stderr)
                results.append({"spec": f"peer:{name}", "error": f"skipped: {reason}"})
                continue
            for setting in settings:
                results.append(_run_driver(python, f"peer:{name}:{setting}", args, []))
    targets, ratios = evaluate(results)
    report = render(results, targets, ratios)
    print(report)
    document = {
        "suite": "queuebox benchmarks",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": time.monotonic() - started,
        "machine": _machine(),
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
