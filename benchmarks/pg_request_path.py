"""``python -m benchmarks.pg_request_path``: the PostgreSQL request path in one run, as ratios.

What a web request pays to enqueue on PostgreSQL, and how soon a worker picks the job up,
beside the raw limits of the same server and table shape and beside procrastinate:

* **enqueue 1x1**: ``perform_later`` one at a time (``--count`` jobs), against a one-row
  ``INSERT`` loop in autocommit (psycopg 3's defaults, which prepare the statement on the
  server from its fifth run; and with preparation off, as queuebox connects);
* **bulk**: one ``perform_later_many`` of ``--bulk`` jobs, against ``executemany`` of as
  many rows in one transaction;
* **async 1x1**: ``aperform_later`` one at a time, against the INSERT loop on a psycopg
  ``AsyncConnection``;
* **pickup p50 / p99** (``--probes``, 0 to skip): one idle worker at its fastest setting,
  probes enqueued 10 ms apart, from just before the enqueue call to the probe's first line.

``--before PATH`` names another checkout (``git worktree add /tmp/qb-before main``): it
runs as a variant of its own, so that a change shows before and after in the same run.
Every measurement is a fresh process (``benchmarks/pg_request_child.py``, which imports
queuebox from the variant's tree). Rounds alternate the order of the variants; the table
gives medians over rounds. Each variant works in a schema of its own (``qbreq_<random>_*``),
dropped at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.stores import DEFAULT_URLS, with_query

__all__ = ["main", "ratios", "render"]

REPO = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().with_name("pg_request_child.py")
#: (metric, what it is measured against) for the ratio lines.
AGAINST = {
    "enqueue_rate": "insert_loop_rate",
    "bulk_rate": "executemany_rate",
    "async_enqueue_rate": "async_insert_loop_rate",
}


def _child(mode: str, tree: Path, url: str, argv: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="qb-request-") as folder:
        env = {**os.environ, "PYTHONPATH": str(tree)}
        command = [sys.executable, str(CHILD), mode, "--url", url, "--folder", folder, *argv]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} ({tree}) failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _drop(server_url: str, schemas: list[str]) -> None:
    import psycopg  # noqa: PLC0415

    with psycopg.connect(server_url, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def _raw_table(server_url: str, schema: str) -> str:
    """The jobs table of this tree's schema, to insert into with no library in between."""
    from queuebox.backends.postgres import PostgresAdapter  # noqa: PLC0415

    adapter = PostgresAdapter(server_url, schema=schema)
    try:
        adapter.migrate()
    finally:
        adapter.close()
    return f"{schema}.{adapter.table}"


def run(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    token = secrets.token_hex(4)
    server = args.postgres_url
    trees = {"queuebox": REPO}
    if args.before is not None:
        trees["queuebox before"] = args.before.resolve()
    schemas = {name: f"qbreq_{token}_{n}" for n, name in enumerate(trees)}
    variants = ["raw", *trees]
    peer = not args.no_peers and importlib.util.find_spec("procrastinate") is not None
    if peer:
        variants.append("procrastinate")
        schemas["procrastinate"] = f"qbreq_{token}_pc"
    schemas["raw"] = f"qbreq_{token}_raw"
    sizes = ["--count", str(args.count), "--bulk", str(args.bulk)]
    results: dict[str, dict[str, list[float]]] = {name: {} for name in variants}
    try:
        table = _raw_table(server, schemas["raw"])
        for round_number in range(args.rounds):
            shift = round_number % len(variants)
            for name in variants[shift:] + variants[:shift]:
                if name == "raw":
                    found = _child("raw", REPO, server, ["--table", table, *sizes])
                elif name == "procrastinate":
                    found = _child(
                        "procrastinate", REPO, server, ["--schema", schemas[name], *sizes]
                    )
                else:
                    url = with_query(server, schema=schemas[name])
                    found = _child("queuebox", trees[name], url, sizes)
                if args.probes and name != "raw":
                    if name == "procrastinate":
                        mode, tree, url = "latency-procrastinate", REPO, server
                    else:
                        mode, tree = "latency-queuebox", trees[name]
                    extra = ["--schema", schemas[name], "--probes", str(args.probes)]
                    found.update(_child(mode, tree, url, extra))
                for key, value in found.items():
                    results[name].setdefault(key, []).append(value)
    finally:
        _drop(server, list(schemas.values()))
    return results


def ratios(medians: dict[str, dict[str, float]]) -> list[str]:
    """One line per queuebox variant and metric: against the raw limit (and the unprepared
    loop), the peer, and the variant before."""
    raw = medians.get("raw", {})
    lines = []
    for name, values in medians.items():
        if name == "raw":
            continue
        for metric, limit in AGAINST.items():
            if metric not in values or limit not in raw:
                continue
            parts = [f"{values[metric] / raw[limit]:.2f}x {limit}"]
            if metric == "enqueue_rate":
                unprepared = raw["insert_loop_unprepared_rate"]
                parts.append(f"{values[metric] / unprepared:.2f}x insert_loop_unprepared_rate")
            if name == "queuebox" and metric in medians.get("queuebox before", {}):
                parts.append(f"{values[metric] / medians['queuebox before'][metric]:.2f}x before")
            if name != "procrastinate" and metric in medians.get("procrastinate", {}):
                parts.append(
                    f"{values[metric] / medians['procrastinate'][metric]:.2f}x procrastinate"
                )
            lines.append(f"{name} {metric}: " + ", ".join(parts))
    return lines


def render(results: dict[str, dict[str, list[float]]], rounds: int) -> str:
    medians = {
        name: {key: statistics.median(values) for key, values in found.items()}
        for name, found in results.items()
    }
    keys = sorted({key for found in medians.values() for key in found})
    out = [f"PostgreSQL request path, medians of {rounds} rounds", ""]
    out.append(f"{'metric':<28}" + "".join(f"{name:>18}" for name in medians))
    for key in keys:
        cells = []
        for found in medians.values():
            value = found.get(key)
            cells.append(f"{'-':>18}" if value is None else f"{value:>18,.2f}")
        out.append(f"{key:<28}" + "".join(cells))
    out += ["", "ratios (medians):", *ratios(medians)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pg_request_path", description=__doc__
    )
    parser.add_argument("--before", type=Path, help="another checkout, run as a variant")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("QUEUEBOX_BENCH_POSTGRES_URL", DEFAULT_URLS["postgres"]),
    )
    parser.add_argument("--count", type=int, default=2000, help="jobs enqueued one at a time")
    parser.add_argument("--bulk", type=int, default=10_000, help="jobs in the bulk call")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--probes", type=int, default=200, help="latency probes (0: none)")
    parser.add_argument("--no-peers", action="store_true", help="leave procrastinate out")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    results = run(args)
    print(render(results, args.rounds))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
