"""``python -m benchmarks.worker_cpu``: the CPU a worker spends per no-op job, for two
variants in one run.

Wall-clock drain rates on a shared machine move by tens of percent from one run to the next
(other processes take the cores, disks sync at their own pace); the CPU time a process spends
on a fixed amount of work moves by a few. So this measures, in a fresh interpreter per
measurement, ``time.process_time()`` (every thread of the process) over one
``Worker.work_off()`` of ``-n`` no-op jobs on queue ``bench`` (batches of ``--batch-size``):

* ``--store free``: a store whose claim and acknowledgement cost nothing (prepared records
  handed out from a list), so the figure is the worker's own path: decoding, running,
  recording, tallying, holding locks;
* ``--store sqlite``: a fresh SQLite file (the whole drain: SQL, commits, rows to records,
  the worker);
* ``--store redis`` / ``--store postgres``: the servers of ``benchmarks.stores`` (client
  CPU only; the server's work is not in it).

Variants: ``--before PATH`` (another checkout, e.g. ``git worktree add /tmp/qb-before
258e259``) against this tree, ``--stats`` (this tree with ``record_stats`` off, then on), or
``--limited`` (this tree without, then with 100 jobs of a full ``max_concurrency`` key
waiting ahead of the free ones: what flow control costs jobs without a limit).
Rounds alternate which variant goes first; the table shows the minimum and median over
rounds and their ratios (second / first).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

from benchmarks.report import table
from benchmarks.runner import tree_env
from benchmarks.stores import DEFAULT_URLS, StoreSpace
from benchmarks.subject import REPO

__all__ = ["main"]

STORES = ("free", "sqlite", "redis", "postgres")

# One measurement, in a fresh interpreter whose PYTHONPATH starts with the variant's tree.
# It only uses names every tree since the worker was split out has (Worker, WorkerSettings,
# the adapters' public calls); record_stats is passed only when asked for.
_MEASURE = textwrap.dedent(
    """
    import dataclasses, json, sys, time
    import queuebox
    from queuebox import Job
    from queuebox.runner.settings import WorkerSettings
    from queuebox.runner.worker import Worker

    store_kind, url, stats = sys.argv[1], sys.argv[2], sys.argv[5]
    n, batch = int(sys.argv[3]), int(sys.argv[4])

    class BenchNoop(Job):
        queue = "bench"
        def perform(self, i):
            pass

    held = 0
    if store_kind == "free":
        from queuebox.backends.memory import MemoryAdapter

        class FreeStore(MemoryAdapter):
            ready = []
            def claim(self, worker_id, queues, *, limit=1, lease):
                out = self.ready[:limit]
                del self.ready[:limit]
                return out
            def complete_many(self, acks, *, keep=False):
                return [True] * len(acks)

        store = FreeStore()
        queuebox.configure(adapter=store)
        BenchNoop.perform_later(0)
        [first] = MemoryAdapter.claim(store, "w", ["bench"], limit=1, lease=60)
        store.ready = [dataclasses.replace(first, id=str(i + 10)) for i in range(n)]
    else:
        from queuebox.backends import from_url
        store = from_url(url)
        queuebox.configure(adapter=store)
        store.migrate()
        store.clear()
        if stats == "limited":
            # 100 jobs of a key at its limit (one of them runs, for a long lease), ahead of
            # the free ones: every claim must skip them.
            from queuebox.testing.flow import limited_job
            full = [limited_job("full", queue="bench", priority=1, max_concurrency=1)]
            store.schedule(full * 100)
            store.claim("holder", ["bench"], limit=1, lease=3600)
            held = 100
        for start in range(0, n, 5000):
            BenchNoop.perform_later_many([[i] for i in range(start, min(n, start + 5000))])
    options = {"record_stats": stats == "on"} if stats in ("on", "off") else {}
    worker = Worker(store, WorkerSettings(batch_size=batch, queues=("bench",), **options))
    wall, cpu = time.perf_counter(), time.process_time()
    worker.work_off()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    # (the free store's one real job stays claimed: it only lent its record)
    counts = [] if store_kind == "free" else store.counts()
    left = sum(c.ready + c.scheduled + c.running for c in counts) - held
    store.clear()
    print(json.dumps({"cpu_us": cpu / n * 1e6, "rate": n / wall, "left": left}))
    """
)


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker_cpu", description=__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    what.add_argument("--stats", action="store_true", help="record_stats off, then on")
    what.add_argument(
        "--limited", action="store_true", help="no limited job, then 100 held back by a limit"
    )
    parser.add_argument("--stores", default="free,sqlite", help="free,sqlite,redis,postgres")
    parser.add_argument("-n", type=int, default=20_000, help="jobs per measurement (20,000)")
    parser.add_argument("--batch-size", type=int, default=100, help="jobs per claim (100)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    args = parser.parse_args(argv)
    unknown = set(args.stores.split(",")) - set(STORES)
    if unknown:
        parser.error(f"unknown store(s) {', '.join(sorted(unknown))}; known: {', '.join(STORES)}")
    if args.before is not None and not (args.before / "queuebox").is_dir():
        parser.error(f"--before {args.before}: no queuebox package there")
    if args.n < 1 or args.batch_size < 1 or args.rounds < 1:
        parser.error("-n, --batch-size and --rounds are at least 1")
    return args


def _measure(tree: Path, store: str, args: argparse.Namespace, stats: str) -> dict[str, float]:
    # A private namespace (SQLite file, Redis prefix, PostgreSQL schema) per measurement.
    space = None if store == "free" else StoreSpace(store, DEFAULT_URLS[store])
    url = "" if space is None else space.url
    argv = [sys.executable, "-c", _MEASURE, store, url, str(args.n), str(args.batch_size), stats]
    try:
        done = subprocess.run(
            argv,
            cwd=tree,
            env={**os.environ, **tree_env(tree)},
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    finally:
        if space is not None:
            space.remove()
    if done.returncode != 0:
        raise SystemExit(f"the measurement failed on {store} ({tree}):\n{done.stderr[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["left"]:
        raise SystemExit(f"{store} ({tree}): {result['left']} jobs were left undrained")
    return result


def main(argv: list[str] | None = None) -> int:
    args = _options(argv)
    if args.before is not None:
        variants = [
            (f"before ({args.before.name})", args.before, "default"),
            ("after", REPO, "default"),
        ]
    elif args.stats:
        variants = [("history off", REPO, "off"), ("history on", REPO, "on")]
    else:
        variants = [("no limited job", REPO, "default"), ("limited held back", REPO, "limited")]
    if args.limited and "free" in args.stores.split(","):
        raise SystemExit("--limited needs a real store: the free store has no flow control")
    body = []
    for store in args.stores.split(","):
        cpu: dict[str, list[float]] = {label: [] for label, _, _ in variants}
        for round_ in range(args.rounds):
            order = variants if round_ % 2 == 0 else variants[::-1]
            for label, tree, stats in order:
                cpu[label].append(_measure(tree, store, args, stats)["cpu_us"])
            print(f"  {store} round {round_ + 1}/{args.rounds}", file=sys.stderr)
        (first, _, _), (second, _, _) = variants
        low = {label: min(values) for label, values in cpu.items()}
        mid = {label: statistics.median(values) for label, values in cpu.items()}
        body.append(
            [
                store,
                f"{low[first]:.1f} / {mid[first]:.1f}",
                f"{low[second]:.1f} / {mid[second]:.1f}",
                f"{low[second] / low[first]:.3f}",
                f"{mid[second] / mid[first]:.3f}",
            ]
        )
    (first, _, _), (second, _, _) = variants
    print(
        f"### CPU per no-op job, us (min / median of {args.rounds} rounds; -n {args.n}, "
        f"batch {args.batch_size}); ratio = {second} / {first}\n"
    )
    header = ["store", first, second, "ratio (min)", "ratio (median)"]
    print("\n".join(table(header, body)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
