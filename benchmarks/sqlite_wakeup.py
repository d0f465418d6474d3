"""``python -m benchmarks.sqlite_wakeup``: how soon an idle SQLite worker picks up a job that
another process schedules, and what the idle worker costs in CPU, for two source trees in
one run.

``--before PATH`` names another checkout (for example ``git worktree add /tmp/qb-before
HEAD``); this tree is the second variant. For each variant and round: one ``queuebox work``
process (its tree on ``PYTHONPATH``) is started on a fresh SQLite file and warmed up with
one job, left idle for ``--idle`` seconds while its CPU time is read from ``/proc`` (every
thread of it), then ``--probes`` jobs are scheduled one by one from this process, 20 ms
apart; a probe's latency runs from just before ``schedule`` to the first line of its
``perform`` (``time.monotonic_ns()``, one clock for every process on Linux). Rounds
alternate which variant goes first; the table gives medians over rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from queuebox.backends.base import NewJob
from queuebox.backends.sqlite import SQLiteAdapter
from queuebox.payload import encode_handler

__all__ = ["main"]

REPO = Path(__file__).resolve().parent.parent
JOBS = textwrap.dedent(
    """
    import os, time
    from queuebox import Job

    OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "latency.txt")

    class Probe(Job):
        def perform(self, sent):
            now = time.monotonic_ns()
            with open(OUT, "a") as out:
                out.write(f"{now - sent}\\n")
    """
)
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime, all threads


def _latencies(folder: Path) -> list[float]:
    path = folder / "latency.txt"
    return [int(v) / 1e6 for v in path.read_text().split()] if path.exists() else []


def _wait_for(count: int, folder: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(_latencies(folder)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(_latencies(folder))} of {count} probes ran")
        time.sleep(0.001)


def measure(tree: Path, *, idle: float, probes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="qb-wakeup-") as tmp:
        folder = Path(tmp)
        (folder / "probe_jobs.py").write_text(JOBS)
        url = f"sqlite:///{folder / 'jobs.db'}"
        store = SQLiteAdapter(folder / "jobs.db")
        store.migrate()
        env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{folder}"}
        argv = [sys.executable, "-m", "queuebox", "--url", url, "--app", "probe_jobs"]
        argv += ["--log-level", "WARNING", "work"]
        log = (folder / "worker.log").open("wb")
        worker = subprocess.Popen(argv, cwd=folder, env=env, stdout=log, stderr=log)
        try:

            def probe() -> None:
                handler = encode_handler("Probe", (time.monotonic_ns(),), {})
                store.schedule(
                    [NewJob(name="Probe", handler=handler, queue="default", priority=50)]
                )

            probe()  # warm-up: the worker is up and has imported everything
            try:
                _wait_for(1, folder)
            except RuntimeError as exc:
                output = (folder / "worker.log").read_text()[-2000:]
                raise RuntimeError(f"{exc}; the worker ({tree}) said:\n{output}") from None
            time.sleep(1.0)
            before = _cpu_seconds(worker.pid)
            time.sleep(idle)
            idle_cpu = (_cpu_seconds(worker.pid) - before) / idle
            for n in range(probes):
                probe()
                _wait_for(n + 2, folder)
                time.sleep(0.02)
            found = sorted(_latencies(folder)[1:])
        finally:
            worker.terminate()
            worker.wait(10)
            log.close()
            store.close()
    return {
        "p50": statistics.median(found),
        "p99": found[min(len(found) - 1, round(0.99 * (len(found) - 1)))],
        "idle_cpu_ms_per_s": idle_cpu * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sqlite_wakeup", description=__doc__)
    parser.add_argument("--before", type=Path, required=True, help="a checkout to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--idle", type=float, default=10.0, help="idle seconds measured")
    args = parser.parse_args(argv)
    variants = {"before": args.before.resolve(), "this tree": REPO}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for round_number in range(args.rounds):
        order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
        for name in order:
            results[name].append(measure(variants[name], idle=args.idle, probes=args.probes))
    print(f"SQLite pickup and idle CPU, medians of {args.rounds} rounds, {args.probes} probes each")
    print(f"{'variant':<12} {'p50 ms':>8} {'p99 ms':>8} {'idle CPU ms/s':>14}")
    medians = {}
    for name, rows in results.items():
        medians[name] = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
        m = medians[name]
        print(f"{name:<12} {m['p50']:>8.2f} {m['p99']:>8.2f} {m['idle_cpu_ms_per_s']:>14.2f}")
    before, after = medians["before"], medians["this tree"]
    print(
        "ratios (this tree / before): "
        + ", ".join(f"{k} {after[k] / before[k]:.3f}" for k in before if before[k])
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
