"""What ``queuebox start``, ``stop`` and ``status`` do to a supervisor they did not start.

``start`` launches ``python -m queuebox supervise ...`` detached (a session of its own, output
to the log file) rather than forking itself, since the command may already hold store
connections; then it waits until ``supervisor.json`` says every worker is up, and fails with
the end of the log if the supervisor exits first. ``stop`` needs nothing but the run folder:
the pid file names the supervisor, ``supervisor.json`` its workers.

Nothing is signalled that is not proven ours (see ``pidfile``): the supervisor only while it
holds the pid file's lock and has the recorded start time, a worker only while it has the
start time the supervisor recorded when it spawned it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from queuebox.errors import QueueboxError
from queuebox.runner.managed import Limits
from queuebox.runner.pidfile import (
    AlreadyRunning,
    SupervisorRecord,
    process_alive,
    read_pid,
    read_supervisor,
    remove_if_stale,
    same_process,
    signal_process,
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
    record = read_supervisor(run_dir.pid_file)
    return record.pid if record is not None and record.running else None


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
    # Job arguments and errors end up in the log: only its owner may read it (the umask
    # may take more away, never add).
    with os.fdopen(os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
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
            if failure is None and returncode == 0:  # its clean exit: a stop came first
                why = (
                    "it was stopped before its workers were up (a stop request reached the "
                    "supervisor while it started: queuebox stop, or SIGTERM)"
                )
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
    record = read_supervisor(run_dir.pid_file)
    if record is None:
        say(f"queuebox is not running (no pid file at {run_dir.pid_file})")
        return False
    pid = record.pid
    if pid is None or not record.running:
        if remove_if_stale(run_dir.pid_file):
            run_dir.clear()
        say(f"queuebox is not running: {_why_stale(record)}; removed the stale pid file")
        return False
    workers = _workers(run_dir)
    started = time.monotonic()
    _signal_supervisor(run_dir, pid, signal.SIGTERM)
    say(
        f"stopping queuebox (supervisor pid {pid}, {len(workers)} worker(s)); waiting up to "
        f"{timeout:g}s for running jobs to finish"
    )
    if _wait_gone(run_dir, pid, workers, timeout):
        say(f"stopped in {time.monotonic() - started:.1f}s")
        return True
    grace = min(timeout, _COLD_GRACE_MAX)
    _signal_supervisor(run_dir, pid, signal.SIGTERM)  # the second request: a cold stop
    say(
        f"still running after {timeout:g}s: cold stop (running jobs are interrupted and "
        f"given back to the queue); {grace:g}s more before SIGKILL"
    )
    if _wait_gone(run_dir, pid, workers, grace):
        say(f"stopped in {time.monotonic() - started:.1f}s")
        return True
    workers = {**workers, **_workers(run_dir)}
    killed = [pid] if _signal_supervisor(run_dir, pid, signal.SIGKILL) else []
    killed += [p for p, identity in workers.items() if signal_process(p, identity, signal.SIGKILL)]
    _wait_gone(run_dir, pid, workers, 5.0)
    if remove_if_stale(run_dir.pid_file):
        run_dir.clear()
    say(
        f"killed pid(s) {', '.join(map(str, killed))} with SIGKILL; the jobs they were running "
        "run again once their locks expire"
    )
    return True


def _why_stale(record: SupervisorRecord) -> str:
    if record.pid is None:
        return "the pid file names no pid"
    if not process_alive(record.pid):
        return f"pid {record.pid} is gone"
    return (
        f"pid {record.pid} is another process now (the supervisor that wrote the pid file is "
        "gone: the file's lock is free); it was not signalled"
    )


def _workers(run_dir: RunDir) -> dict[int, str | None]:
    """Each worker's pid, with the start identity the supervisor recorded for it."""
    state = run_dir.read_state() or {}
    found: dict[int, str | None] = {}
    for worker in state.get("workers", []):
        pid, identity = worker.get("pid"), worker.get("identity")
        if isinstance(pid, int) and pid > 0:
            found[pid] = identity if isinstance(identity, str) else None
    return found


def _supervisor_running(run_dir: RunDir, pid: int) -> bool:
    record = read_supervisor(run_dir.pid_file)
    return record is not None and record.pid == pid and record.running


def _signal_supervisor(run_dir: RunDir, pid: int, signum: int) -> bool:
    """Signal the supervisor only while the pid file still proves it is ours."""
    record = read_supervisor(run_dir.pid_file)
    if record is None or record.pid != pid or not record.running:
        return False
    if record.identity is not None:
        return signal_process(pid, record.identity, signum)
    try:  # no /proc: the lock, just tested, is the proof
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def _worker_alive(pid: int, identity: str | None) -> bool:
    return same_process(pid, identity) if identity is not None else process_alive(pid)


def _wait_gone(
    run_dir: RunDir, supervisor: int, workers: Mapping[int, str | None], timeout: float
) -> bool:
    deadline = time.monotonic() + timeout
    while _supervisor_running(run_dir, supervisor) or any(
        _worker_alive(pid, identity) for pid, identity in workers.items()
    ):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL)
    return True


# -- status -----------------------------------------------------------------------------------


def process_report(run_dir: RunDir) -> dict[str, Any] | None:
    """The supervisor and each worker with what it runs now; ``None`` without a pid file."""
    record = read_supervisor(run_dir.pid_file)
    if record is None or record.pid is None:
        return None
    pid = record.pid
    if not record.running:
        return {"pid_file": str(run_dir.pid_file), "supervisor": {"pid": pid, "running": False}}
    state = run_dir.read_state() or {}
    now = time.time()
    workers = []
    for slot in state.get("workers", []):
        worker_pid = slot.get("pid")
        status = run_dir.read_worker(worker_pid) if isinstance(worker_pid, int) else None
        job = (status or {}).get("job")
        identity = slot.get("identity")
        workers.append(
            {
                "label": slot.get("label"),
                "queues": slot.get("queues"),
                "pid": worker_pid,
                "alive": isinstance(worker_pid, int)
                and _worker_alive(worker_pid, identity if isinstance(identity, str) else None),
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
