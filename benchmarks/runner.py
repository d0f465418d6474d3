"""Starting driver processes, and what every entry point records about the machine.

Each subject runs in a driver process of its own (``python -m benchmarks.driver SPEC``),
started with the interpreter that has the subject's library installed and with the source
tree whose code it measures on ``PYTHONPATH`` (this repository, or another checkout such as
a ``git worktree`` of an older commit: ``python -m benchmarks.compare``).
"""

from __future__ import annotations

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

from benchmarks.peers import PEERS_VENV
from benchmarks.subject import REPO

__all__ = ["busy_fraction", "interpreter_for", "machine", "run_driver", "wait_until_idle"]


def interpreter_for(module: str) -> tuple[str | None, str]:
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


def tree_env(tree: Path) -> dict[str, str]:
    """The environment that makes ``tree``'s ``queuebox`` and ``benchmarks`` the ones
    imported (by the driver and, through it, by the workers it starts)."""
    others = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    paths = [str(tree), *others]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), "PYTHONUNBUFFERED": "1"}


def run_driver(
    python: str, spec: str, argv: list[str], *, tree: Path = REPO, label: str = ""
) -> dict[str, Any]:
    """Run one driver and return its result (``{"spec", "error"}`` when it failed)."""
    with tempfile.TemporaryDirectory(prefix="queuebox-bench-") as scratch:
        out = Path(scratch) / "result.json"
        command = [python, "-m", "benchmarks.driver", spec, "--out", str(out), *argv]
        started = time.monotonic()
        print(f"  {label or spec} ...", end="", flush=True, file=sys.stderr)
        completed = subprocess.run(
            command,
            cwd=tree,
            env={**os.environ, **tree_env(tree)},
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


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from ``/proc/stat``."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    ticks = [int(value) for value in first[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def busy_fraction(seconds: float = 1.0) -> float | None:
    """How busy the machine's CPUs were over the next ``seconds`` (0..1; ``None`` off
    Linux)."""
    before = _cpu_ticks()
    time.sleep(seconds)
    after = _cpu_ticks()
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def wait_until_idle(max_busy: float, patience: float = 600.0) -> float | None:
    """Wait (up to ``patience`` seconds) until the CPUs were at most ``max_busy`` busy over
    two seconds, so that a measurement does not share the machine with someone's test run.
    Returns the last busy fraction seen; ``max_busy`` 0 or less only takes a look."""
    if max_busy <= 0:
        return busy_fraction(0.5)
    deadline = time.monotonic() + patience
    while True:
        busy = busy_fraction(2.0)
        if busy is None or busy <= max_busy or time.monotonic() > deadline:
            return busy
        print(f"  (machine {busy:.0%} busy: waiting)", file=sys.stderr)


def machine() -> dict[str, Any]:
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
