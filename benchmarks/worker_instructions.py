"""``python -m benchmarks.worker_instructions``: the instructions ``queuebox work`` runs per
no-op job on SQLite, for two trees, counted by valgrind's callgrind.

Wall-clock rates and even CPU times on this shared 2-core machine move by tens of percent
between runs; an instruction count does not. For each tree (``--before PATH`` and this
one) it fills a fresh SQLite file with ``-n`` no-op jobs (that tree's ``perform_later_many``),
runs ``python -m queuebox --log-level WARNING work --batch-size B -q bench`` under
``valgrind --tool=callgrind`` until the file holds no job, stops it with SIGTERM, and
reads the total instructions; then the same with ``--small`` jobs. The difference divided
by ``n - small`` is the worker's cost per job, without its start-up (reported apart).
Each process runs from a scratch folder, so that the tree on ``PYTHONPATH`` is the one
imported. Needs ``valgrind`` (``apt-get install valgrind``); about a minute per tree.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.report import table
from benchmarks.subject import REPO

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


def _instructions(tree: Path, jobs: int, batch: int, scratch: Path) -> int:
    """Total instructions of one ``queuebox work`` process that drains ``jobs`` jobs."""
    db = scratch / f"jobs-{jobs}.db"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tree), str(scratch)]),
        "QUEUEBOX_URL": f"sqlite:///{db}",
        "QUEUEBOX_APP": "noopapp",
    }
    subprocess.run([sys.executable, "-c", _FILL, str(jobs)], env=env, cwd=scratch, check=True)
    out = scratch / f"callgrind-{jobs}.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        *("-m", "queuebox", "--log-level", "WARNING", "work"),
        *("--batch-size", str(batch), "-q", "bench"),
    ]
    worker = subprocess.Popen(
        command, env=env, cwd=scratch, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with sqlite3.connect(db, timeout=60) as connection:
            while connection.execute("SELECT count(*) FROM queuebox_jobs").fetchone()[0]:
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker of {tree} exited with {worker.returncode}")
                time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(120)
    found = _TOTAL.search(out.read_bytes())
    if found is None:
        raise RuntimeError(f"no instruction total in {out}")
    return int(found.group(1))


def _measure(tree: Path, jobs: int, small: int, batch: int) -> tuple[float, float]:
    """(instructions per job, start-up instructions in millions) for ``tree``."""
    scratch = Path(tempfile.mkdtemp(prefix="queuebox-instructions-"))
    try:
        (scratch / "noopapp.py").write_text(_APP)
        large = _instructions(tree, jobs, batch, scratch)
        little = _instructions(tree, small, batch, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    per_job = (large - little) / (jobs - small)
    return per_job, (little - per_job * small) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="another checkout")
    parser.add_argument("-n", type=int, default=3000, help="jobs of the large drain")
    parser.add_argument("--small", type=int, default=1000, help="jobs of the small drain")
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    if args.n <= args.small or args.small < 1:
        parser.error("-n must be larger than --small, and --small at least 1")
    rows = []
    results = {}
    for label, tree in (("before", args.before.resolve()), ("after", REPO)):
        print(f"  {label}: {tree} ...", file=sys.stderr, flush=True)
        results[label] = _measure(tree, args.n, args.small, args.batch_size)
    (before, before_start), (after, after_start) = results["before"], results["after"]
    rows.append(["per job", f"{before:,.0f}", f"{after:,.0f}", f"{after / before:.3f}"])
    rows.append(
        [
            "start-up (millions)",
            f"{before_start:,.0f}",
            f"{after_start:,.0f}",
            f"{after_start / before_start:.3f}",
        ]
    )
    print(
        f"### Instructions of `queuebox work` on SQLite (batch {args.batch_size}; -n {args.n}"
        f" minus {args.small}); ratio = after / before ({args.before})\n"
    )
    print("\n".join(table(["measure", "before", "after", "ratio"], rows)))


if __name__ == "__main__":
    main()
