"""``python -m benchmarks.request_path``: what a request pays to enqueue on Redis, and how
soon an idle worker starts the job, as ratios to the raw limits measured in the same process,
for two source trees in one run.

``--before PATH`` names another checkout (for example ``git worktree add --detach
/tmp/qb-before main``); this tree is the second variant. Each round starts one child process
per variant (its tree first on ``PYTHONPATH``, this file run by path), alternating which goes
first; the table gives medians over rounds. A child measures, in alternating blocks of
``--calls`` calls (the median block counts):

* the redis-py ``PING`` loop and ``perform_later`` one at a time (and, with ``--peers``, in this
  tree's children only, Huey's and Dramatiq's enqueue one at a time, the issue's peers);
* the ``redis.asyncio`` ``PING`` loop and ``aperform_later``, on one event loop;
* one pipeline of ``--bulk`` ``ZADD`` and ``perform_later_many`` of ``--bulk`` jobs;
* the enqueue's server time per call (``INFO commandstats`` counters of ``EVALSHA`` and
  ``FCALL`` read before and after one more block of ``perform_later``: other clients'
  scripts in between count too, so on a shared server it is an upper bound);
* pickup latency, as ``benchmarks.workloads.measure_latency`` measures it (``queuebox work``
  with the README's defaults; with ``--peers``, Huey's consumer too).

Every subject works under a key prefix of its own, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["main", "summarise"]

REPO = Path(__file__).resolve().parent.parent
#: Shown in this order: (key, label, higher is better).
ROWS = (
    ("ping", "redis-py PING loop /s", True),
    ("perform_later", "perform_later one at a time /s", True),
    ("enqueue_vs_ping", "  ratio to PING", True),
    ("server_us", "  enqueue script, server us per call", False),
    ("huey", "Huey enqueue /s", True),
    ("huey_vs_ping", "  ratio to PING", True),
    ("dramatiq", "Dramatiq enqueue /s", True),
    ("dramatiq_vs_ping", "  ratio to PING", True),
    ("aping", "redis.asyncio PING loop /s", True),
    ("aperform_later", "aperform_later one at a time /s", True),
    ("aenqueue_vs_aping", "  ratio to asyncio PING", True),
    ("zadd", "one pipeline of ZADD /s", True),
    ("bulk", "perform_later_many /s", True),
    ("bulk_vs_zadd", "  ratio to the ZADD pipeline", True),
    ("p50_ms", "pickup p50 ms", False),
    ("p99_ms", "pickup p99 ms", False),
    ("huey_p50_ms", "Huey pickup p50 ms", False),
    ("huey_p99_ms", "Huey pickup p99 ms", False),
)


# -- the child: one variant, one round ----------------------------------------------------------


def _rate_blocks(
    variants: dict[str, Callable[[int], None]], calls: int, blocks: int
) -> dict[str, float]:
    """Calls per second of each variant, the median of ``blocks`` alternating blocks."""
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(blocks):
        for name, run in variants.items():
            started = time.perf_counter()
            run(calls)
            rates[name].append(calls / (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in rates.items()}


def _script_totals(client: Any) -> tuple[int, float]:
    """Calls and microseconds of ``EVALSHA`` and ``FCALL`` so far (a tree calls one or the
    other; other clients' calls count too)."""
    info = client.info("commandstats")
    stats = [info.get(f"cmdstat_{command}", {}) for command in ("evalsha", "fcall")]
    return sum(int(s.get("calls", 0)) for s in stats), sum(float(s.get("usec", 0)) for s in stats)


def _child(options: dict[str, Any]) -> dict[str, Any]:
    import redis  # noqa: PLC0415
    import redis.asyncio  # noqa: PLC0415

    import queuebox  # noqa: PLC0415
    from benchmarks.jobs import BenchNoop  # noqa: PLC0415
    from benchmarks.queuebox_subjects import QueueboxSubject  # noqa: PLC0415
    from benchmarks.workloads import measure_latency  # noqa: PLC0415

    url, calls, blocks = options["redis_url"], options["calls"], options["blocks"]
    result: dict[str, Any] = {"queuebox": queuebox.__file__}
    subject = QueueboxSubject("redis", url, "default")
    peers: dict[str, Any] = {}
    if options["peers"]:
        for name in ("huey", "dramatiq"):
            try:
                module = __import__(f"benchmarks.peers.{name}_bench", fromlist=["make"])
                peers[name] = module.make("fastest", url)
            except ImportError as exc:
                result[f"{name}_missing"] = str(exc)
    client = redis.Redis.from_url(url)
    try:
        subject.setup()
        subject.enqueue_each(0, 50)  # connect, load the scripts, register the queue

        def ping(count: int) -> None:
            for _ in range(count):
                client.ping()

        def enqueue(count: int) -> None:
            subject.enqueue_each(0, count)

        sync: dict[str, Callable[[int], None]] = {"ping": ping, "perform_later": enqueue}
        for name, peer in peers.items():
            peer.enqueue_each(0, 50)
            sync[name] = functools.partial(peer.enqueue_each, 0)
        result.update(_rate_blocks(sync, calls, blocks))
        before = _script_totals(client)
        enqueue(calls)  # one more block, alone: the peers' scripts are not counted
        after = _script_totals(client)
        result["server_us"] = (after[1] - before[1]) / max(1, after[0] - before[0])
        result.update(_async_rates(url, calls, blocks, BenchNoop))
        subject.purge()
        result.update(_bulk_rates(client, subject, options["bulk"], max(3, blocks // 2)))
        subject.purge()
        result.update(measure_latency(subject, options["probes"]))
        if "huey" in peers:
            huey = measure_latency(peers["huey"], options["probes"])
            result["huey_p50_ms"], result["huey_p99_ms"] = huey["p50_ms"], huey["p99_ms"]
    finally:
        client.close()
        for peer in peers.values():
            peer.cleanup()
        subject.cleanup()
    return result


def _async_rates(url: str, calls: int, blocks: int, job: Any) -> dict[str, float]:
    import redis.asyncio  # noqa: PLC0415

    import queuebox.config  # noqa: PLC0415

    async def run() -> dict[str, float]:
        client = redis.asyncio.Redis.from_url(url)
        await client.ping()
        await job.aperform_later(0)

        async def aping(count: int) -> None:
            for _ in range(count):
                await client.ping()

        async def aenqueue(count: int) -> None:
            for i in range(count):
                await job.aperform_later(i)

        variants: dict[str, Callable[[int], Awaitable[None]]] = {
            "aping": aping,
            "aperform_later": aenqueue,
        }
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(blocks):
            for name, variant in variants.items():
                started = time.perf_counter()
                await variant(calls)
                rates[name].append(calls / (time.perf_counter() - started))
        await client.aclose()
        adapter: Any = queuebox.config.get_adapter()
        await adapter.aclose()
        return {name: statistics.median(values) for name, values in rates.items()}

    return asyncio.run(run())


def _bulk_rates(client: Any, subject: Any, count: int, blocks: int) -> dict[str, float]:
    key = f"qbbench-{secrets.token_hex(4)}:zadd"
    rates: dict[str, list[float]] = {"zadd": [], "bulk": []}
    try:
        for _ in range(blocks):
            pipe = client.pipeline(transaction=False)
            now = time.time() * 1000
            for i in range(count):
                pipe.zadd(key, {str(i): now + i})
            started = time.perf_counter()
            pipe.execute()
            rates["zadd"].append(count / (time.perf_counter() - started))
            client.delete(key)
            started = time.perf_counter()
            subject.enqueue_bulk(0, count)
            rates["bulk"].append(count / (time.perf_counter() - started))
            subject.purge()
    finally:
        client.delete(key)
    return {name: statistics.median(values) for name, values in rates.items()}


# -- the parent: rounds, variants, the table ----------------------------------------------------


def _run_child(tree: Path, options: dict[str, Any], python: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    argv = [python, str(Path(__file__).resolve()), "--child", json.dumps(options)]
    done = subprocess.run(argv, env=env, cwd=tree, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the child for {tree} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if not str(result["queuebox"]).startswith(str(tree)):
        raise RuntimeError(f"the child for {tree} imported queuebox from {result['queuebox']}")
    return result


def summarise(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Medians over rounds of each figure, and of each round's own ratios."""
    for row in rows:
        for ratio, (top, bottom) in {
            "enqueue_vs_ping": ("perform_later", "ping"),
            "huey_vs_ping": ("huey", "ping"),
            "dramatiq_vs_ping": ("dramatiq", "ping"),
            "aenqueue_vs_aping": ("aperform_later", "aping"),
            "bulk_vs_zadd": ("bulk", "zadd"),
        }.items():
            if row.get(top) and row.get(bottom):
                row[ratio] = row[top] / row[bottom]
    summary: dict[str, float | None] = {}
    for key, _, _ in ROWS:
        values = [row[key] for row in rows if isinstance(row.get(key), int | float)]
        summary[key] = statistics.median(values) if values else None
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.request_path", description=__doc__)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--before", type=Path, help="a checkout to compare with")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=2000, help="calls per timed block")
    parser.add_argument("--blocks", type=int, default=5, help="alternating blocks per child")
    parser.add_argument("--bulk", type=int, default=10_000, help="jobs per bulk call")
    parser.add_argument("--probes", type=int, default=200, help="pickup probes per child")
    parser.add_argument("--peers", action="store_true", help="Huey and Dramatiq beside")
    parser.add_argument("--json", type=Path, help="write the rounds and medians here")
    args = parser.parse_args(argv)
    if args.child is not None:
        if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
            sys.path.pop(0)  # run by path: this folder's modules are not top-level names
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    options = {
        "redis_url": args.redis_url,
        "calls": args.calls,
        "blocks": args.blocks,
        "bulk": args.bulk,
        "probes": args.probes,
    }
    variants = {"this tree": REPO}
    if args.before is not None:
        variants = {"before": args.before.resolve(), "this tree": REPO}
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for number in range(args.rounds):
        order = list(variants) if number % 2 == 0 else list(reversed(variants))
        for name in order:
            child = {**options, "peers": args.peers and name == "this tree"}
            rounds[name].append(_run_child(variants[name], child, sys.executable))
    medians = {name: summarise(rows) for name, rows in rounds.items()}
    print(
        f"Redis request path, medians of {args.rounds} rounds ({args.blocks} blocks of "
        f"{args.calls} calls, bulk {args.bulk}, {args.probes} probes)"
    )
    print(f"{'':44}" + "".join(f"{name:>14}" for name in variants))
    for key, label, _ in ROWS:
        cells = [medians[name][key] for name in variants]
        if all(cell is None for cell in cells):
            continue
        shown = ["-" if c is None else f"{c:.3f}" if c < 10 else f"{c:,.0f}" for c in cells]
        print(f"{label:44}" + "".join(f"{cell:>14}" for cell in shown))
    if args.json is not None:
        args.json.write_text(json.dumps({"rounds": rounds, "medians": medians}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
