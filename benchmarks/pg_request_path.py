"""``python -m benchmarks.pg_request_path``: the PostgreSQL request path in one run, as ratios.

What a web request pays to enqueue on PostgreSQL, and how soon a worker picks the job up,
beside the raw limits of the same server and table shape and beside procrastinate:

* **enqueue 1x1**: ``perform_later`` one at a time (``--count`` jobs), against a one-row
  ``INSERT`` loop in autocommit (psycopg 3's defaults, which prepare the statement on the
  server from its fifth run; and with preparation off, as queuebox connects);
* **bulk**: one ``perform_later_many`` of ``--bulk`` jobs, against ``executemany`` of as
  many rows in one transaction (three of each, alternating);
* **async 1x1**: ``aperform_later`` one at a time, against the INSERT loop on a psycopg
  ``AsyncConnection``;
* **pickup p50 / p99** (``--probes``, 0 to skip): one idle worker at its fastest setting,
  probes enqueued 10 ms apart, from just before the enqueue call to the probe's first line.

Each variant (this tree; with ``--prepared`` this tree with ``?prepare=on`` too;
``--before PATH``; procrastinate) is measured in a fresh process
(``benchmarks/pg_request_child.py``, which imports queuebox from the variant's tree), and
that process measures the raw limits too, in blocks of 100 calls that alternate with the
variant's own, so that the load of a shared machine weighs on both sides of each ratio.
Against another variant, a ratio is normalised round by round by the limits each measured.
Rounds alternate the order of the variants; the table gives medians over rounds. Each
variant works in a schema of its own (``qbreq_<random>_*``), dropped at the end.
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
#: This tree with the insert statements prepared on the server (``?prepare=on``).
PREPARED = "queuebox prepare=on"
#: Each measure and the raw limit it is set against (the child reports both).
RATIOS = (
    ("enqueue_rate", "insert_loop_rate"),
    ("enqueue_rate", "insert_loop_unprepared_rate"),
    ("bulk_rate", "executemany_rate"),
    ("async_enqueue_rate", "async_insert_loop_rate"),
)


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


def _measure(
    name: str, trees: dict[str, Path], schemas: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    server = args.postgres_url
    sizes = ["--count", str(args.count), "--bulk", str(args.bulk)]
    sizes += ["--table", args.raw_table, "--url-raw", server]
    probes = ["--schema", schemas[name], "--probes", str(args.probes)]
    if name == "procrastinate":
        found = _child("procrastinate", REPO, server, ["--schema", schemas[name], *sizes])
        if args.probes:
            found.update(_child("latency-procrastinate", REPO, server, probes))
        return found
    options = {"prepare": "on"} if name == PREPARED else {}
    url = with_query(server, schema=schemas[name], **options)
    found = _child("queuebox", trees[name], url, sizes)
    if args.probes:
        found.update(_child("latency-queuebox", trees[name], url, probes))
    return found


def run(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    token = secrets.token_hex(4)
    trees = {"queuebox": REPO}
    if args.prepared:
        trees[PREPARED] = REPO
    if args.before is not None:
        trees["queuebox before"] = args.before.resolve()
    variants = list(trees)
    if not args.no_peers and importlib.util.find_spec("procrastinate") is not None:
        variants.append("procrastinate")
    schemas = {name: f"qbreq_{token}_{n}" for n, name in enumerate(variants)}
    schemas["raw"] = f"qbreq_{token}_raw"
    results: dict[str, dict[str, list[float]]] = {name: {} for name in variants}
    try:
        args.raw_table = _raw_table(args.postgres_url, schemas["raw"])
        for round_number in range(args.rounds):
            shift = round_number % len(variants)
            for name in variants[shift:] + variants[:shift]:
                for key, value in _measure(name, trees, schemas, args).items():
                    results[name].setdefault(key, []).append(value)
    finally:
        _drop(args.postgres_url, list(schemas.values()))
    return results


def _paired(a: list[float], b: list[float]) -> float:
    """The median over rounds of a[r] / b[r]."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def ratios(results: dict[str, dict[str, list[float]]]) -> list[str]:
    """One line per variant and measure: its ratio to the raw limit measured beside it
    (median over rounds), then, normalised by those limits round by round, against the
    variant before and against procrastinate."""
    lines = []
    for name, found in results.items():
        for metric, limit in RATIOS:
            key = f"{metric} / {limit}"
            if key not in found:
                continue
            parts = [f"{statistics.median(found[key]):.2f}x {limit}"]
            for other, label in (("queuebox before", "before"), ("procrastinate", "procrastinate")):
                theirs = results.get(other, {}).get(key)
                if name in ("queuebox", PREPARED) and theirs:
                    parts.append(f"{_paired(found[key], theirs):.2f}x {label}")
            lines.append(f"{name} {metric}: " + ", ".join(parts))
    return lines


def render(results: dict[str, dict[str, list[float]]], rounds: int) -> str:
    medians = {
        name: {key: statistics.median(values) for key, values in found.items() if "/" not in key}
        for name, found in results.items()
    }
    keys = sorted({key for found in medians.values() for key in found})
    width = max(14, *(len(name) + 2 for name in medians))
    out = [f"PostgreSQL request path, medians of {rounds} rounds", ""]
    out.append(f"{'measure':<28}" + "".join(f"{name:>{width}}" for name in medians))
    for key in keys:
        cells = []
        for found in medians.values():
            value = found.get(key)
            cells.append(f"{'-':>{width}}" if value is None else f"{value:>{width},.2f}")
        out.append(f"{key:<28}" + "".join(cells))
    out += ["", "ratios (each against the raw limit measured beside it):", *ratios(results)]
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
    parser.add_argument(
        "--prepared", action="store_true", help="this tree with ?prepare=on, as a variant too"
    )
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    results = run(args)
    print(render(results, args.rounds))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
