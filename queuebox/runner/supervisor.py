"""The supervisor behind ``queuebox start``: keep the worker processes alive until told to stop.

It is a ``WorkerPool`` (one fresh interpreter per worker, in its own session) that also:

- holds the pid file (and its lock) in the run folder while it runs, and keeps
  ``supervisor.json`` there up to date with each worker slot's pid and start identity, so
  ``stop`` and ``status`` need no flags and never take a reused pid for a worker;
- replaces a worker that dies, after 1 s, 2 s, 4 s ... up to 60 s when it keeps dying, the
  delay starting over once a worker has lived a minute; a worker that retired by itself
  (``--max-jobs``, ``--max-memory``) is replaced at once;
- during start-up, gives up (and stops the others) as soon as a worker dies before it came
  up, so that a bad deployment fails ``start`` instead of looping;
- passes stop requests on like the pool: the first SIGTERM/SIGINT is a warm stop for every
  worker, a second one a cold stop; it exits when the last worker has.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from queuebox.runner.managed import Limits
from queuebox.runner.pidfile import PidFile, process_identity
from queuebox.runner.pool import WorkerPool, WorkerSlot
from queuebox.runner.proctitle import set_process_title
from queuebox.runner.rundir import RunDir
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import (
    COLD_STOP_SIGNAL,
    WARM_STOP_SIGNAL,
    StopFlag,
    handle_stop_signals,
)

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_RESET_AFTER",
    "Supervisor",
    "describe_exit",
    "redirect_output",
    "restart_delay",
    "run_supervisor",
]

BACKOFF_START = 1.0
BACKOFF_MAX = 60.0
BACKOFF_RESET_AFTER = 60.0  # a worker that lived this long starts its backoff over
_TICK = 0.1


def restart_delay(deaths_in_a_row: int) -> float:
    """1 s after the first death, then 2, 4, 8 ... capped at ``BACKOFF_MAX``."""
    return float(min(BACKOFF_MAX, BACKOFF_START * 2 ** max(deaths_in_a_row - 1, 0)))


def describe_exit(returncode: int) -> str:
    """``killed by SIGKILL`` or ``exit code 3``, from a ``Popen.returncode``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class _Life:
    """What the supervisor remembers of one slot across its processes."""

    started_at: float = 0.0  # monotonic
    started_wall: float = 0.0
    deaths_in_a_row: int = 0
    restarts: int = 0
    restart_at: float | None = None  # monotonic
    last_exit: str | None = None
    #: The worker process's start identity, so that ``stop`` never signals a reused pid.
    identity: str | None = None


class Supervisor(WorkerPool):
    def __init__(
        self,
        groups: Sequence[WorkerSettings],
        *,
        run_dir: RunDir,
        logger: logging.Logger,
        limits: Limits | None = None,
        global_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_file: Path | None = None,
    ) -> None:
        super().__init__(
            groups,
            logger=logger,
            env=env,  # the store URL and app modules reach the workers through it
            extra_args=["--child-run-dir", str(run_dir.path), *(limits or Limits()).child_args()],
            global_args=global_args,
        )
        self.run_dir = run_dir
        self.log_file = log_file
        self.phase = "starting"
        self.failure: str | None = None
        self.started_at = time.time()
        self._life = {slot.label: _Life() for slot in self.slots}

    def spawn(self, slot: WorkerSlot) -> Any:
        process = super().spawn(slot)
        life = self._life[slot.label]
        life.started_at, life.started_wall = time.monotonic(), time.time()
        life.restart_at = None
        life.identity = process_identity(process.pid)
        return process

    def run(self, stop: StopFlag) -> int:
        """Start the workers and keep them alive until ``stop``; 0 unless start-up failed."""
        self.start()
        self.save()
        stops_sent = 0
        while True:
            changed = self._reap(stop)
            if stop.stopping:
                if self.phase in ("starting", "running"):
                    self.phase, changed = "stopping", True
                    self.logger.info("stopping %d worker(s)", len(self._running()))
                requested = 2 if stop.cold.is_set() else 1
                while stops_sent < requested:
                    stops_sent += 1
                    self.signal_all(WARM_STOP_SIGNAL if stops_sent == 1 else COLD_STOP_SIGNAL)
                if not self._running():
                    self.save()
                    break
            else:
                changed = self._respawn_due() or changed
                changed = self._check_started() or changed
            if changed:
                self.save()
            if stop.stopping:
                time.sleep(_TICK)
            else:
                stop.wait(_TICK)
        return 1 if self.phase == "failed" else 0

    def save(self) -> None:
        now_monotonic, now = time.monotonic(), time.time()
        workers = []
        for slot in self.slots:
            life = self._life[slot.label]
            restart_at = life.restart_at
            workers.append(
                {
                    "label": slot.label,
                    "queues": None if slot.settings.queues is None else list(slot.settings.queues),
                    "pid": slot.process.pid if slot.process is not None else None,
                    "identity": life.identity if slot.process is not None else None,
                    "started_at": life.started_wall,
                    "restarts": life.restarts,
                    "last_exit": life.last_exit,
                    "restart_at": None
                    if restart_at is None
                    else now + max(0.0, restart_at - now_monotonic),
                }
            )
        self.run_dir.write_state(
            {
                "pid": os.getpid(),
                "phase": self.phase,
                "failure": self.failure,
                "started_at": self.started_at,
                "log_file": None if self.log_file is None else str(self.log_file),
                "workers": workers,
                "updated_at": now,
            }
        )

    # -- one tick ---------------------------------------------------------------------------

    def _running(self) -> list[WorkerSlot]:
        return [slot for slot in self.slots if slot.process is not None]

    def _reap(self, stop: StopFlag) -> bool:
        changed = False
        for slot in self._running():
            assert slot.process is not None
            returncode = slot.process.poll()
            if returncode is None:
                continue
            changed = True
            pid, how = slot.process.pid, describe_exit(returncode)
            slot.process = None
            status = self.run_dir.read_worker(pid) or {}
            self.run_dir.remove_worker(pid)
            life = self._life[slot.label]
            life.last_exit = how
            if stop.stopping:
                log = self.logger.info if returncode == 0 else self.logger.warning
                log("worker %s (pid %d) stopped: %s", slot.label, pid, how)
            elif self.phase == "starting":
                self.failure = f"worker {slot.label} (pid {pid}) died during start-up: {how}"
                self.logger.error("%s; stopping the others", self.failure)
                self.phase = "failed"
                stop.request()
            elif returncode == 0 and status.get("exit_reason"):
                self.logger.info(
                    "worker %s (pid %d) retired: %s; starting a fresh one",
                    slot.label,
                    pid,
                    status["exit_reason"],
                )
                life.restart_at = time.monotonic()
            else:
                verb = "exited" if returncode == 0 else "died"
                self._schedule_restart(slot, life, f"(pid {pid}) {verb}: {how}")
        return changed

    def _schedule_restart(self, slot: WorkerSlot, life: _Life, what: str) -> None:
        if time.monotonic() - life.started_at >= BACKOFF_RESET_AFTER:
            life.deaths_in_a_row = 0
        life.deaths_in_a_row += 1
        delay = restart_delay(life.deaths_in_a_row)
        life.restart_at = time.monotonic() + delay
        self.logger.warning("worker %s %s; restarting in %gs", slot.label, what, delay)

    def _respawn_due(self) -> bool:
        now = time.monotonic()
        changed = False
        for slot in self.slots:
            life = self._life[slot.label]
            if slot.process is None and life.restart_at is not None and life.restart_at <= now:
                try:
                    self.spawn(slot)
                except OSError as exc:  # out of processes or memory: try again later
                    self._schedule_restart(slot, life, f"could not be started: {exc}")
                    continue
                life.restarts += 1
                changed = True
        return changed

    def _check_started(self) -> bool:
        """During start-up: whether every worker has now written its status file."""
        if self.phase != "starting":
            return False
        for slot in self.slots:
            if slot.process is None or not self.run_dir.worker_file(slot.process.pid).exists():
                return False
        self.phase = "running"
        self.logger.info("all %d worker(s) are up", len(self.slots))
        return True


def redirect_output(log_file: Path) -> None:
    """Send this process's stdout and stderr (and so its workers') to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    # Job arguments and errors end up in the log: only its owner may read it.
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


def run_supervisor(
    groups: Sequence[WorkerSettings],
    *,
    run_dir: RunDir,
    logger: logging.Logger,
    limits: Limits | None = None,
    global_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    log_file: Path | None = None,
) -> int:
    """Hold the pid file and supervise until stopped; the exit status for the process.

    Raises ``AlreadyRunning`` when a live supervisor holds the pid file.
    """
    stop = StopFlag()
    with handle_stop_signals(stop):
        run_dir.create()
        pid_file = PidFile(run_dir.pid_file)
        pid_file.acquire()
        supervisor: Supervisor | None = None
        try:
            set_process_title("supervisor", str(run_dir.path))
            if pid_file.replaced_stale is not None:
                logger.warning(
                    "replaced a stale pid file (pid %d is no longer a queuebox supervisor)",
                    pid_file.replaced_stale,
                )
            run_dir.clear()
            supervisor = Supervisor(
                groups,
                run_dir=run_dir,
                logger=logger,
                limits=limits,
                global_args=global_args,
                env=env,
                log_file=log_file,
            )
            logger.info("supervisor started (pid %d, run folder %s)", os.getpid(), run_dir.path)
            code = supervisor.run(stop)
            logger.info("supervisor stopped")
            return code
        finally:
            # A start-up failure stays in supervisor.json for ``start`` to report.
            run_dir.clear(keep_state=supervisor is not None and supervisor.phase == "failed")
            pid_file.release()
