"""``python -m benchmarks.worker_instructions``: the instructions ``queuebox work`` runs per
no-op job, for two variants, counted by valgrind's callgrind.

Wall-clock rates and even CPU times on this shared 2-core machine move by tens of percent
between runs; an instruction count does not. For each variant it fills a fresh store
(SQLite by default; ``--store redis`` or ``postgres`` on the servers of
``benchmarks.stores``, where only the client's instructions count) with ``-n`` no-op jobs
(that tree's ``perform_later_many``), runs ``queuebox --log-level WARNING work --batch-size B
-q bench`` under ``valgrind --tool=callgrind`` until the store holds no job,
stops it with SIGTERM, and reads the total instructions; then the same with ``--small``
jobs. The difference divided by ``n - small`` is the worker's cost per job, without its
start-up (reported apart). The variants: ``--before PATH`` (another checkout) against this
tree, or ``--stats``: this tree with the workers' throughput tallies off (a
``queuebox.toml`` with ``record_stats = false``), then on. Each process runs from a scratch
folder, so that the tree on ``PYTHONPATH`` is the one imported. The heartbeat's periodic
checks are stretched by ``--time-scale`` (100: about callgrind's slowdown), so that they
weigh per job what they weigh at full speed (at 1, as they are, they are most of the
difference between two rounds of one variant). Needs ``valgrind`` (``apt-get install
valgrind``); about a minute per variant. ``--enqueue`` counts, instead of the worker, a
process that enqueues ``-n`` (then ``--small``) jobs one ``perform_later`` at a time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.report import table
from benchmarks.stores import DEFAULT_URLS, StoreSpace
from benchmarks.subject import REPO
from queuebox.backends import from_url

__all__ = ["main"]

_APP = textwrap.dedent(
    """
    from queuebox import Job


    class Noop(Job):
        queue = "bench"

        def perform(self, i):
            pass
    """
)
_FILL = (
    "import noopapp, sys\n"
    "n = int(sys.argv[1])\n"
    "for s in range(0, n, 5000):\n"
    "    noopapp.Noop.perform_later_many([[i] for i in range(s, min(n, s + 5000))])\n"
)
_TOTAL = re.compile(rb"^(?:summary|totals): (\d+)", re.MULTILINE)

#: ``queuebox work`` with the heartbeat's clock-driven periods (the cancellation check every
#: 0.25 s, the registry beat every 5 s) stretched by argv[1]: under callgrind a drain runs
#: about a hundred times slower, so at their own periods they would come a hundred times as
#: often per job as at full speed, and their count would follow the machine's load (the same
#: variant moved by 7 % between rounds on Redis). A tree without these names (before the
#: registry) is run as it is.
_LAUNCH = textwrap.dedent(
    """
    import sys
    import queuebox.runner.heartbeat as heartbeat
    scale = float(sys.argv.pop(1))
    for name in ("CANCEL_CHECK_INTERVAL", "BEAT_INTERVAL"):
        if hasattr(heartbeat, name):
            setattr(heartbeat, name, getattr(heartbeat, name) * scale)
    from queuebox.cli import main
    sys.argv[0] = "queuebox"
    main()
    """
)


def _left(space: StoreSpace) -> int:
    """Jobs still waiting or running. The SQL tables are read directly: every tree's schema
    has them, and this tree's adapter would migrate another tree's schema to its own
    version, which that tree's worker then refuses. Redis through this tree's adapter."""
    if space.store == "sqlite":
        with sqlite3.connect(space.sqlite_path, timeout=60) as connection:
            found: int = connection.execute("SELECT count(*) FROM queuebox_jobs").fetchone()[0]
            return found
    if space.store == "postgres":
        import psycopg  # noqa: PLC0415 - only for this store
        from psycopg import sql  # noqa: PLC0415

        query = sql.SQL(
            "SELECT count(*) FROM {} WHERE failed_at IS NULL AND completed_at IS NULL"
        ).format(sql.Identifier(space.schema, "queuebox_jobs"))
        with psycopg.connect(space.server_url, autocommit=True) as connection:
            try:
                row = connection.execute(query).fetchone()
            except psycopg.errors.UndefinedTable:  # the fill has not made the schema yet
                return 1
            return 0 if row is None else int(row[0])
    adapter = from_url(space.url)
    try:
        return sum(c.ready + c.scheduled + c.running for c in adapter.counts())
    finally:
        adapter.close()


#: ``--enqueue``: argv[1] jobs, one ``perform_later`` call each.
_ENQUEUE = (
    "import noopapp, sys\nfor i in range(int(sys.argv[1])):\n    noopapp.Noop.perform_later(i)\n"
)


def _instructions(
    tree: Path,
    jobs: int,
    batch: int,
    scratch: Path,
    *,
    store: str,
    time_scale: float,
    enqueue: bool = False,
) -> int:
    """Total instructions of one ``queuebox work`` process that drains ``jobs`` jobs, or
    (``enqueue``) of one process that enqueues them one ``perform_later`` at a time."""
    space = StoreSpace(store, DEFAULT_URLS[store])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tree), str(scratch)]),
        "QUEUEBOX_URL": space.url,
        "QUEUEBOX_APP": "noopapp",
    }
    if enqueue:
        out = scratch / f"callgrind-enqueue-{jobs}.out"
        try:
            subprocess.run(
                [
                    *("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"),
                    *(sys.executable, "-c", _ENQUEUE, str(jobs)),
                ],
                env=env,
                cwd=scratch,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        finally:
            space.remove()
        return _total(out)
    try:
        subprocess.run([sys.executable, "-c", _FILL, str(jobs)], env=env, cwd=scratch, check=True)
        out = scratch / f"callgrind-{jobs}.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            *("-c", _LAUNCH, str(time_scale), "--log-level", "WARNING", "work"),
            *("--batch-size", str(batch), "-q", "bench"),
        ]
        worker = subprocess.Popen(
            command, env=env, cwd=scratch, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            while _left(space):
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker of {tree} exited with {worker.returncode}")
                time.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(120)
    finally:
        space.remove()
    return _total(out)


def _total(out: Path) -> int:
    found = _TOTAL.search(out.read_bytes())
    if found is None:
        raise RuntimeError(f"no instruction total in {out}")
    return int(found.group(1))


#: The worker's settings without the throughput tallies (``--stats``).
_NO_STATS = '[[workers]]\nqueue = "bench"\nrecord_stats = false\n'


def _measure(
    tree: Path,
    jobs: int,
    small: int,
    *,
    batch: int,
    store: str,
    time_scale: float,
    config: str | None = None,
    enqueue: bool = False,
) -> tuple[float, float]:
    """(instructions per job, start-up instructions in millions) for ``tree``, with
    ``config`` as the worker folder's ``queuebox.toml``."""
    scratch = Path(tempfile.mkdtemp(prefix="queuebox-instructions-"))
    try:
        (scratch / "noopapp.py").write_text(_APP)
        if config is not None:
            (scratch / "queuebox.toml").write_text(config)
        counts = [
            _instructions(
                tree, n, batch, scratch, store=store, time_scale=time_scale, enqueue=enqueue
            )
            for n in (jobs, small)
        ]
        large, little = counts
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    per_job = (large - little) / (jobs - small)
    return per_job, (little - per_job * small) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--before", type=Path, help="another checkout")
    which.add_argument("--stats", action="store_true", help="throughput tallies off vs on")
    parser.add_argument(
        "--enqueue",
        action="store_true",
        help="count a process that enqueues the jobs one perform_later at a time instead of"
        " the worker (with --before)",
    )
    parser.add_argument("-n", type=int, default=3000, help="jobs of the large drain")
    parser.add_argument("--small", type=int, default=1000, help="jobs of the small drain")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument(
        "--time-scale",
        type=float,
        default=100.0,
        help="stretch the heartbeat's periodic checks by this factor (about callgrind's"
        " slowdown, so they come as often per job as at full speed; 1 leaves them as they are)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure both variants this many times, alternating (the heartbeat's periodic"
        " reads follow the clock, so a count moves a little between runs); the table gives"
        " medians and each round's ratio",
    )
    parser.add_argument(
        "--store",
        choices=["sqlite", "redis", "postgres"],
        default="sqlite",
        help="a server store counts the client's instructions only (the servers of"
        " benchmarks.stores)",
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    if args.n <= args.small or args.small < 1:
        parser.error("-n must be larger than --small, and --small at least 1")
    if not args.time_scale >= 1:
        parser.error("--time-scale must be at least 1")
    if args.enqueue and args.stats:
        parser.error("--enqueue compares two trees: give --before, not --stats")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    rows = []
    results: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    if args.stats:
        variants = [("before", REPO, _NO_STATS), ("after", REPO, None)]
        names = "record_stats off (before) and on (after)"
    else:
        variants = [("before", args.before.resolve(), None), ("after", REPO, None)]
        names = f"after / before ({args.before})"
    for round_ in range(args.rounds):
        # Alternate which goes first, so that a drift of the machine weighs on both.
        for label, tree, config in variants if round_ % 2 == 0 else variants[::-1]:
            print(f"  round {round_ + 1}, {label}: {tree} ...", file=sys.stderr, flush=True)
            results[label].append(
                _measure(
                    tree,
                    args.n,
                    args.small,
                    batch=args.batch_size,
                    store=args.store,
                    time_scale=args.time_scale,
                    config=config,
                    enqueue=args.enqueue,
                )
            )
    before, after = (statistics.median(per_job for per_job, _ in results[k]) for k in results)
    before_start, after_start = (
        statistics.median(start for _, start in results[k]) for k in results
    )
    rows.append(["per job", f"{before:,.0f}", f"{after:,.0f}", f"{after / before:.3f}"])
    if args.rounds > 1:
        for round_, ((b, _), (a, _)) in enumerate(zip(*results.values(), strict=True)):
            rows.append([f"round {round_ + 1}", f"{b:,.0f}", f"{a:,.0f}", f"{a / b:.3f}"])
    rows.append(
        [
            "start-up (millions)",
            f"{before_start:,.0f}",
            f"{after_start:,.0f}",
            f"{after_start / before_start:.3f}",
        ]
    )
    what = "`perform_later`, one job per call," if args.enqueue else "`queuebox work`"
    print(
        f"### Instructions of {what} on {args.store} (batch {args.batch_size};"
        f" -n {args.n}"
        f" minus {args.small}; median of {args.rounds}; periodic checks x{args.time_scale:g});"
        f" {names}\n"
    )
    print("\n".join(table(["measure", "before", "after", "ratio"], rows)))


if __name__ == "__main__":
    main()
