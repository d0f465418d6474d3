"""Several worker processes kept attached to the terminal: ``queuebox work -n 4`` and
``queuebox workoff -n 4``.

Each worker is a fresh interpreter (``python -m queuebox work --child-settings ...``), never a
fork of this one, so no store connection or thread is shared and nothing needs pickling. The
store URL and the app modules reach it through the environment (``QUEUEBOX_URL``,
``QUEUEBOX_APP``), never its command line, which every local user can read in ``ps``.
Children run in their own session, so a Ctrl-C reaches only this process, which passes each
stop request on: the first as SIGUSR1 (warm), the second as SIGUSR2 (cold). Neither counts as
a SIGTERM, so a worker that also got a service manager's SIGTERM still finishes its job.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from queuebox.runner.settings import WorkerSettings
from queuebox.runner.signals import (
    COLD_STOP_SIGNAL,
    PASSED_ON_SIGNALS,
    WARM_STOP_SIGNAL,
    StopFlag,
)

#: What ``queuebox --log-level`` accepts (``queuebox.cli.common.LOG_LEVELS``; the runner does
#: not import the command line).
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

__all__ = [
    "WorkerPool",
    "WorkerSlot",
    "child_command",
    "make_slots",
    "settings_from_json",
    "settings_to_json",
]


def settings_to_json(settings: WorkerSettings) -> str:
    data = asdict(settings)
    data["queues"] = None if settings.queues is None else list(settings.queues)
    return json.dumps(data)


def settings_from_json(text: str) -> WorkerSettings:
    data = json.loads(text)
    if data.get("queues") is not None:
        data["queues"] = tuple(data["queues"])
    return WorkerSettings(**data)


@dataclass
class WorkerSlot:
    """One worker process: its group's settings and its index among the slots that work the
    same queues (so that two groups on one queue give ``*#1`` and ``*#2``)."""

    settings: WorkerSettings
    index: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def label(self) -> str:
        return f"{self.settings.queue_label}#{self.index}"


def child_command(
    slot: WorkerSlot,
    *,
    subcommand: str = "work",
    extra: Sequence[str] = (),
    global_args: Sequence[str] = (),
) -> list[str]:
    """``global_args`` go before ``subcommand`` (``--verbose``), ``extra`` after it. The child
    logs at this process's queuebox log level (``--log-level``). The command holds no store
    URL and no app module: pass those in the child's environment."""
    command = [sys.executable, "-m", "queuebox", *global_args]
    level = logging.getLevelName(logging.getLogger("queuebox").getEffectiveLevel())
    if level in _LOG_LEVELS and "--log-level" not in global_args:
        command += ["--log-level", level]
    command += [subcommand, "--child-settings", settings_to_json(slot.settings)]
    command += ["--child-label", slot.label, "--parent-pid", str(os.getpid()), *extra]
    return command


def make_slots(groups: Sequence[WorkerSettings]) -> list[WorkerSlot]:
    """One slot per worker of every group, each label unique."""
    slots: list[WorkerSlot] = []
    taken: dict[str, int] = {}
    for group in groups:
        for _ in range(group.count):
            index = taken[group.queue_label] = taken.get(group.queue_label, 0) + 1
            slots.append(WorkerSlot(settings=group, index=index))
    return slots


class WorkerPool:
    """Start one process per slot, pass stop requests on, wait for them all."""

    def __init__(
        self,
        groups: Sequence[WorkerSettings],
        *,
        logger: logging.Logger,
        env: Mapping[str, str] | None = None,
        subcommand: str = "work",
        extra_args: Sequence[str] = (),
        global_args: Sequence[str] = (),
        report_early_exits: bool = True,
    ) -> None:
        """``env`` is the children's whole environment (``None``: this one's); it carries
        the store URL and app modules. ``report_early_exits=False`` for children that are
        meant to end by themselves (``workoff``)."""
        self.slots = make_slots(groups)
        self._subcommand, self._extra = subcommand, tuple(extra_args)
        self._global_args = tuple(global_args)
        self._env = None if env is None else dict(env)
        self._report_early_exits = report_early_exits
        self.logger = logger

    def start(self) -> None:
        for slot in self.slots:
            self.spawn(slot)

    def spawn(self, slot: WorkerSlot) -> subprocess.Popen[bytes]:
        """Start ``slot``'s worker process (again, for a supervisor replacing a dead one)."""
        command = child_command(
            slot, subcommand=self._subcommand, extra=self._extra, global_args=self._global_args
        )
        # The child starts with the stop signals blocked (a signal mask survives exec), and
        # handle_stop_signals unblocks them once its handlers are in place: a stop passed on
        # while the child still imports the app waits for them, where SIGUSR1's default
        # action killed the child (`work -n` reported a dead worker, `workoff -n` exit 1).
        held = signal.pthread_sigmask(signal.SIG_BLOCK, PASSED_ON_SIGNALS)
        try:
            slot.process = subprocess.Popen(command, start_new_session=True, env=self._env)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        self.logger.info("started worker %s (pid %d)", slot.label, slot.process.pid)
        return slot.process

    def signal_all(self, signum: int = signal.SIGTERM) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signum)

    def wait(self, stop: StopFlag) -> int:
        """Block until every worker exits; return 0 if all exited cleanly.

        A worker that dies while the others run is reported at once, and not replaced: that is
        the supervisor's job (``queuebox start``, ``start --foreground``).
        """
        stops_sent = 0
        reported: set[str] = set()
        while any(slot.process is not None and slot.process.poll() is None for slot in self.slots):
            requested = 2 if stop.cold.is_set() else 1 if stop.stopping else 0
            while stops_sent < requested:
                stops_sent += 1
                self.signal_all(WARM_STOP_SIGNAL if stops_sent == 1 else COLD_STOP_SIGNAL)
            if not stop.stopping and self._report_early_exits:
                self._report_deaths(reported)
            time.sleep(0.1)
        worst = 0
        for slot in self.slots:
            code = slot.process.returncode if slot.process is not None else 0
            if code != 0:
                worst = 1
                if slot.label not in reported and self._report_early_exits:
                    self.logger.error("worker %s ended with %s", slot.label, _how(code))
        return worst

    def _report_deaths(self, reported: set[str]) -> None:
        for slot in self.slots:
            code = slot.process.poll() if slot.process is not None else None
            if code is None or slot.label in reported:
                continue
            reported.add(slot.label)
            self.logger.error(
                "worker %s (pid %d) ended with %s while the others run; `work -n` does not "
                "replace it: run `queuebox start --foreground` for a supervisor that does",
                slot.label,
                slot.process.pid if slot.process is not None else 0,
                _how(code),
            )


def _how(returncode: int) -> str:
    return f"signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
