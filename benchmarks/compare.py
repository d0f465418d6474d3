"""``python -m benchmarks.compare``: two variants of queuebox's no-op drain, in one run.

* ``--before PATH``: the code of another checkout (for example ``git worktree add
  /tmp/qb-before 258e259``) against this one. Each variant's driver and workers run with
  their own tree on ``PYTHONPATH``, so each side fills, drains and measures with its own
  queuebox (and its own copy of the harness).
* ``--stats``: this tree with the workers' throughput tallies on (``record_stats``, the
  default) and off (a ``queuebox.toml`` with ``[[workers]] record_stats = false`` in the
  worker's folder). The report says whether the store keeps them at all.

Every round runs each store and setting once per variant, alternating which variant goes
first, so that a machine that speeds up or slows down during the run favours neither; the
table gives the medians of the rounds and the ratio of the second variant to the first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.report import fmt, table
from benchmarks.runner import machine, run_driver, wait_until_idle
from benchmarks.stores import DEFAULT_URLS
from benchmarks.subject import REPO

__all__ = ["Variant", "main", "summarize"]

STORES = ("sqlite", "postgres", "redis")
SETTINGS = ("default", "fastest")
#: The second variant's 1-process drain must stay within this share of the first's.
WITHIN = 0.05


@dataclass(frozen=True)
class Variant:
    label: str
    tree: Path
    suffix: str = ""  # added to the driver spec: ":nostats" turns the tallies off


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    what.add_argument("--stats", action="store_true", help="throughput tallies on vs off")
    parser.add_argument("--stores", default=",".join(STORES), help="sqlite,postgres,redis")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="default,fastest")
    parser.add_argument("--procs", default="1", help="worker processes per drain (1; or 1,2)")
    parser.add_argument("-n", type=int, default=10_000, help="jobs per drain (10,000)")
    parser.add_argument("--enqueue-n", type=int, default=2_000, help="jobs enqueued 1 by 1")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are shown (3)")
    parser.add_argument("--max-seconds", type=float, default=15.0, help="cap on one drain")
    parser.add_argument(
        "--idle",
        type=float,
        default=0.0,
        help="before each subject, wait until the CPUs were at most this busy (0..1)",
    )
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks/results/compare.json")
    parser.add_argument(
        "--redis-url", default=os.environ.get("QUEUEBOX_BENCH_REDIS_URL", DEFAULT_URLS["redis"])
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("QUEUEBOX_BENCH_POSTGRES_URL", DEFAULT_URLS["postgres"]),
    )
    args = parser.parse_args(argv)
    args.stores = [s for s in args.stores.split(",") if s]
    args.settings = [s for s in args.settings.split(",") if s]
    for names, known, what_ in (
        (args.stores, STORES, "store"),
        (args.settings, SETTINGS, "setting"),
    ):
        unknown = sorted(set(names) - set(known))
        if unknown:
            parser.error(f"unknown {what_}(s) {', '.join(unknown)}; known: {', '.join(known)}")
    if not args.procs.replace(",", "").isdigit():
        parser.error(f"--procs {args.procs!r}: give process counts such as 1 or 1,2")
    if args.before is not None:
        args.before = args.before.resolve()
        if not (args.before / "queuebox").is_dir() or not (args.before / "benchmarks").is_dir():
            parser.error(f"--before {args.before}: not a queuebox checkout (no queuebox/ there)")
    if args.rounds < 1 or args.n < 1:
        parser.error("-n and --rounds must be at least 1")
    return args


def variants(args: argparse.Namespace) -> tuple[Variant, Variant]:
    if args.before is not None:
        return Variant(f"before ({args.before.name})", args.before), Variant("after", REPO)
    # The baseline first: the ratio (second / first) and the verdict then read "history on
    # against off", as they read "after against before" for --before.
    return Variant("history off", REPO, ":nostats"), Variant("history on", REPO)


def summarize(
    results: list[dict[str, Any]], first: str, second: str, procs: list[str]
) -> list[dict[str, Any]]:
    """Per store and setting: each variant's median rates and the second's ratio to the
    first."""
    grouped: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for r in results:
        if "error" in r or "drain" not in r:
            continue
        key = (r["store"], r["setting"])
        grouped.setdefault(key, {}).setdefault(r["variant"], []).append(r)
    rows = []
    for (store, setting), by_variant in grouped.items():
        row: dict[str, Any] = {"store": store, "setting": setting}
        for label in (first, second):
            runs = by_variant.get(label, [])
            measures = {f"drain {p}p": [_rate(r["drain"].get(p)) for r in runs] for p in procs}
            measures["enqueue 1x1"] = [_rate(r.get("enqueue_one")) for r in runs]
            measures["bulk"] = [_rate(r.get("enqueue_bulk")) for r in runs]
            row[label] = {name: _median(values) for name, values in measures.items() if any(values)}
            row[label]["runs"] = len(runs)
            row[label]["drain 1p rates"] = measures.get("drain 1p", [])
            history = [r["history"] for r in runs if "history" in r]
            if history:
                row[label]["history"] = history[-1]
        row["ratios"] = {
            name: row[second][name] / row[first][name]
            for name in row[first]
            if isinstance(row[first].get(name), float)
            and isinstance(row[second].get(name), float)
            and row[first][name]
        }
        rows.append(row)
    return rows


def _rate(entry: Any) -> float | None:
    return entry.get("rate") if isinstance(entry, dict) else None


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def render(rows: list[dict[str, Any]], first: str, second: str, procs: list[str]) -> str:
    measures = [f"drain {p}p" for p in procs] + ["enqueue 1x1", "bulk"]
    out = [f"### {second} against {first} (jobs/s, medians; ratio = {second} / {first})", ""]
    body = []
    for row in rows:
        for name in measures:
            a, b = row[first].get(name), row[second].get(name)
            ratio = row["ratios"].get(name)
            verdict = ""
            if name == "drain 1p" and ratio is not None:
                verdict = "within 5%" if ratio >= 1 - WITHIN else "MORE THAN 5% SLOWER"
            body.append(
                [
                    f"queuebox-{row['store']}",
                    row["setting"],
                    name,
                    fmt(a),
                    fmt(b),
                    "-" if ratio is None else f"{ratio:.3f}",
                    verdict,
                ]
            )
    out += table(["system", "setting", "measure", first, second, "ratio", "1-proc drain"], body)
    notes = []
    for row in rows:
        for label in (first, second):
            history = row[label].get("history")
            if history is not None:
                notes.append(
                    f"- queuebox-{row['store']} {row['setting']}, {label}: the store "
                    f"{'keeps' if history['kept_by_store'] else 'does NOT keep'} throughput "
                    f"history; record_stats {history['record_stats']}; runs tallied in the "
                    f"last round: {history['runs_tallied']}"
                )
    if notes:
        out += ["", *notes]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _options(argv)
    first, second = variants(args)
    procs = [p for p in args.procs.split(",") if p]
    started = time.monotonic()
    driver_argv = [
        "-n",
        str(args.n),
        "--enqueue-n",
        str(args.enqueue_n),
        "--procs",
        args.procs,
        "--probes",
        "20",
        "--max-seconds",
        str(args.max_seconds),
        "--redis-url",
        args.redis_url,
        "--postgres-url",
        args.postgres_url,
    ]
    results: list[dict[str, Any]] = []
    for round_number in range(1, args.rounds + 1):
        order = (first, second) if round_number % 2 else (second, first)
        for store in args.stores:
            for setting in args.settings:
                for variant in order:
                    busy = wait_until_idle(args.idle)
                    spec = f"queuebox:{store}:{setting}{variant.suffix}"
                    result = run_driver(
                        sys.executable,
                        spec,
                        driver_argv,
                        tree=variant.tree,
                        label=f"round {round_number}: {variant.label}: {spec}",
                    )
                    result.update(
                        variant=variant.label, round=round_number, machine_busy_before=busy
                    )
                    results.append(result)
    rows = summarize(results, first.label, second.label, procs)
    print(render(rows, first.label, second.label, procs))
    for r in results:
        if "error" in r:
            print(f"- {r['variant']}: {r['spec']}: {str(r['error'])[:300]}")
    document = {
        "suite": "queuebox benchmarks: compare",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": time.monotonic() - started,
        "machine": machine(),
        "variants": [
            {"label": v.label, "tree": str(v.tree), "suffix": v.suffix} for v in (first, second)
        ],
        "options": {
            "stores": args.stores,
            "settings": args.settings,
            "procs": procs,
            "n": args.n,
            "rounds": args.rounds,
            "idle": args.idle,
        },
        "results": results,
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2))
    print(f"results written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
