"""What ``queuebox start``, ``stop`` and ``status`` do to a supervisor they did not start.

``start`` launches ``python -m queuebox supervise ...`` detached (a session of its own, output
to the log file) rather than forking itself, since the command may already hold store
connections; then it waits until ``supervisor.json`` says every worker is up, and fails with
the end of the log if the supervisor exits first. ``stop`` needs nothing but the run folder:
the pid file names the supervisor, ``supervisor.json`` its workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from queuebox.errors import QueueboxError
from queuebox.runner.managed import Limits
from queuebox.runner.pidfile import (
    AlreadyRunning,
    is_queuebox_process,
    is_supervisor,
    read_pid,
    signal_if_queuebox,
)
from queuebox.runner.pool import settings_from_json, settings_to_json
from queuebox.runner.rundir import RunDir
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.supervisor import describe_exit

__all__ = [
    "StartFailed",
    "Started",
    "groups_from_json",
    "groups_to_json",
    "process_report",
    "running_supervisor",
    "start_background",
    "stop_supervisor",
]

_POLL = 0.05
_COLD_GRACE_MAX = 5.0  # after a cold stop, seconds before SIGKILL
_LOG_TAIL_LINES = 20


class StartFailed(QueueboxError):
    """The supervisor did not come up; the message ends with the tail of its log."""


@dataclass
class Started:
    pid: int
    workers: list[dict[str, Any]] = field(default_factory=list)
    log_file: Path | None = None
    replaced_stale: int | None = None


def groups_to_json(groups: Sequence[WorkerSettings]) -> str:
    return json.dumps([json.loads(settings_to_json(group)) for group in groups])


def groups_from_json(text: str) -> list[WorkerSettings]:
    return [settings_from_json(json.dumps(item)) for item in json.loads(text)]


def running_supervisor(run_dir: RunDir) -> int | None:
    """The pid of the live supervisor that holds the pid file, if any."""
    pid = read_pid(run_dir.pid_file)
    return pid if pid is not None and is_supervisor(pid) else None


# -- start ------------------------------------------------------------------------------------


def start_background(
    groups: Sequence[WorkerSettings],
    *,
    run_dir: RunDir,
    log_file: Path,
    limits: Limits,
    env: Mapping[str, str],
    global_args: Sequence[str] = (),
    timeout: float = 30.0,
) -> Started:
    """Launch a detached supervisor and return once all its workers are up."""
    running = running_supervisor(run_dir)
    if running is not None:
        raise AlreadyRunning(running, run_dir.pid_file)
    stale = read_pid(run_dir.pid_file)
    run_dir.create()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    offset = log_file.stat().st_size if log_file.exists() else 0
    command = [
        sys.executable,
        "-m",
        "queuebox",
        *global_args,
        "supervise",
        "--groups",
        groups_to_json(groups),
        "--run-dir",
        str(run_dir.path),
        "--log-file",
        str(log_file),
        *limits.child_args(),
    ]
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            command,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        return _wait_started(
            process, run_dir=run_dir, log_file=log_file, offset=offset, stale=stale, timeout=timeout
        )
    except KeyboardInterrupt:
        raise StartFailed(
            f"interrupted; the supervisor (pid {process.pid}) goes on starting in the "
            "background: see 'queuebox status', or 'queuebox stop'"
        ) from None


def _wait_started(
    process: subprocess.Popen[bytes],
    *,
    run_dir: RunDir,
    log_file: Path,
    offset: int,
    stale: int | None,
    timeout: float,
) -> Started:
    deadline = time.monotonic() + timeout
    failure: str | None = None
    while True:
        returncode = process.poll()
        state = run_dir.read_state()
        if state is not None and state.get("pid") == process.pid:
            failure = state.get("failure") or failure
            if state.get("phase") == "running":
                return Started(process.pid, state["workers"], log_file, stale)
        if returncode is not None:
            why = failure or f"the supervisor exited ({describe_exit(returncode)})"
            raise StartFailed(_with_log_tail(f"queuebox did not start: {why}", log_file, offset))
        if time.monotonic() > deadline:
            break
        time.sleep(_POLL)
    stop_supervisor(run_dir, timeout=10.0, say=lambda line: None)
    if process.poll() is None:  # never wrote its pid file: stop it directly
        process.kill()
    process.wait(timeout=10)
    raise StartFailed(
        _with_log_tail(
            f"queuebox did not start: the workers were not all up after {timeout:g}s, so it "
            "was stopped",
            log_file,
            offset,
        )
    )


def _with_log_tail(message: str, log_file: Path, offset: int) -> str:
    try:
        with log_file.open("rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        lines = []
    if not lines:
        return f"{message} (nothing in the log {log_file})"
    tail = "\n".join(f"  {line}" for line in lines[-_LOG_TAIL_LINES:])
    return f"{message}; the end of {log_file}:\n{tail}"


# -- stop -------------------------------------------------------------------------------------


def stop_supervisor(run_dir: RunDir, *, timeout: float, say: Callable[[str], None]) -> bool:
    """Warm stop; after ``timeout`` s a cold stop; shortly after, SIGKILL for what is left.

    Says what it did through ``say``; returns whether a supervisor was running.
    """
    pid = read_pid(run_dir.pid_file)
    if pid is None:
        say(f"queuebox is not running (no pid file at {run_dir.pid_file})")
        return False
    if not is_supervisor(pid):
        run_dir.pid_file.unlink(missing_ok=True)
        run_dir.clear()
        say(f"queuebox is not running: pid {pid} is gone; removed the stale pid file")
        return False
    workers = _worker_pids(run_dir)
    started = time.monotonic()
    _kill(pid, signal.SIGTERM)
    say(
        f"stopping queuebox (supervisor pid {pid}, {len(workers)} worker(s)); waiting up to "
        f"{timeout:g}s for running jobs to finish"
    )
    if _wait_gone(pid, workers, timeout):
        say(f"stopped in {time.monotonic() - started:.1f}s")
        return True
    grace = min(timeout, _COLD_GRACE_MAX)
    _kill(pid, signal.SIGTERM)  # the second request: a cold stop
    say(
        f"still running after {timeout:g}s: cold stop (running jobs are interrupted and "
        f"given back to the queue); {grace:g}s more before SIGKILL"
    )
    if _wait_gone(pid, workers, grace):
        say(f"stopped in {time.monotonic() - started:.1f}s")
        return True
    workers = sorted(set(workers) | set(_worker_pids(run_dir)))
    killed = [p for p in [pid, *workers] if signal_if_queuebox(p, signal.SIGKILL)]
    _wait_gone(pid, workers, 5.0)
    if read_pid(run_dir.pid_file) == pid:
        run_dir.pid_file.unlink(missing_ok=True)
    run_dir.clear()
    say(
        f"killed pid(s) {', '.join(map(str, killed))} with SIGKILL; the jobs they were running "
        "run again once their locks expire"
    )
    return True


def _worker_pids(run_dir: RunDir) -> list[int]:
    state = run_dir.read_state() or {}
    return [w["pid"] for w in state.get("workers", []) if isinstance(w.get("pid"), int)]


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _wait_gone(supervisor: int, workers: Iterable[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    workers = list(workers)
    while is_supervisor(supervisor) or any(is_queuebox_process(pid) for pid in workers):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL)
    return True


# -- status -----------------------------------------------------------------------------------


def process_report(run_dir: RunDir) -> dict[str, Any] | None:
    """The supervisor and each worker with what it runs now; ``None`` without a pid file."""
    pid = read_pid(run_dir.pid_file)
    if pid is None:
        return None
    if not is_supervisor(pid):
        return {"pid_file": str(run_dir.pid_file), "supervisor": {"pid": pid, "running": False}}
    state = run_dir.read_state() or {}
    now = time.time()
    workers = []
    for slot in state.get("workers", []):
        worker_pid = slot.get("pid")
        status = run_dir.read_worker(worker_pid) if isinstance(worker_pid, int) else None
        job = (status or {}).get("job")
        workers.append(
            {
                "label": slot.get("label"),
                "queues": slot.get("queues"),
                "pid": worker_pid,
                "alive": isinstance(worker_pid, int) and is_queuebox_process(worker_pid),
                "up_seconds": _since(slot.get("started_at"), now),
                "restarts": slot.get("restarts", 0),
                "last_exit": slot.get("last_exit"),
                "restart_in_seconds": _until(slot.get("restart_at"), now),
                "jobs_done": (status or {}).get("jobs_done", 0),
                "job": None if not job else {**job, "running_seconds": _since(job["since"], now)},
            }
        )
    return {
        "pid_file": str(run_dir.pid_file),
        "supervisor": {
            "pid": pid,
            "running": True,
            "phase": state.get("phase"),
            "up_seconds": _since(state.get("started_at"), now),
            "log_file": state.get("log_file"),
        },
        "workers": workers,
    }


def _since(moment: Any, now: float) -> float | None:
    return round(max(0.0, now - moment), 1) if isinstance(moment, int | float) else None


def _until(moment: Any, now: float) -> float | None:
    return round(max(0.0, moment - now), 1) if isinstance(moment, int | float) else None
