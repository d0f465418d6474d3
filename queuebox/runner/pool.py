"""Several worker processes kept attached to the terminal: ``queuebox work -n 4``.

Each worker is a fresh interpreter (``python -m queuebox work --child ...``), never a fork of
this one, so no store connection or thread is shared and nothing needs pickling. Children run
in their own session, so a Ctrl-C reaches only this process, which passes each stop request
on: the first as SIGUSR1 (warm), the second as SIGUSR2 (cold). Neither counts as a SIGTERM,
so a worker that also got a service manager's SIGTERM still finishes its job.
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
from queuebox.runner.signals import COLD_STOP_SIGNAL, WARM_STOP_SIGNAL, StopFlag

#: What ``queuebox --log-level`` accepts (``queuebox.cli.common.LOG_LEVELS``; the runner does
#: not import the command line).
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

__all__ = ["WorkerPool", "WorkerSlot", "child_command", "settings_from_json", "settings_to_json"]


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
    """One worker process: its group's settings and its index within the group."""

    settings: WorkerSettings
    index: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def label(self) -> str:
        return f"{self.settings.queue_label}#{self.index}"


def child_command(
    slot: WorkerSlot,
    *,
    url: str | None,
    app: Sequence[str],
    extra: Sequence[str] = (),
    global_args: Sequence[str] = (),
) -> list[str]:
    """``global_args`` go before ``work`` (``--verbose``), ``extra`` after it. The child logs
    at this process's queuebox log level (``--log-level``)."""
    command = [sys.executable, "-m", "queuebox", *global_args]
    level = logging.getLevelName(logging.getLogger("queuebox").getEffectiveLevel())
    if level in _LOG_LEVELS and "--log-level" not in global_args:
        command += ["--log-level", level]
    if url:
        command += ["--url", url]
    for module in app:
        command += ["--app", module]
    command += ["work", "--child-settings", settings_to_json(slot.settings)]
    command += ["--child-label", slot.label, "--parent-pid", str(os.getpid()), *extra]
    return command


class WorkerPool:
    """Start one process per slot, pass stop requests on, wait for them all."""

    def __init__(
        self,
        groups: Sequence[WorkerSettings],
        *,
        url: str | None,
        app: Sequence[str],
        logger: logging.Logger,
        extra_args: Sequence[str] = (),
        global_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.slots = [
            WorkerSlot(settings=group, index=index)
            for group in groups
            for index in range(1, group.count + 1)
        ]
        self._url, self._app, self._extra = url, tuple(app), tuple(extra_args)
        self._global_args = tuple(global_args)
        self._env = None if env is None else dict(env)
        self.logger = logger

    def start(self) -> None:
        for slot in self.slots:
            self.spawn(slot)

    def spawn(self, slot: WorkerSlot) -> subprocess.Popen[bytes]:
        """Start ``slot``'s worker process (again, for a supervisor replacing a dead one)."""
        command = child_command(
            slot, url=self._url, app=self._app, extra=self._extra, global_args=self._global_args
        )
        slot.process = subprocess.Popen(command, start_new_session=True, env=self._env)
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
            if not stop.stopping:
                self._report_deaths(reported)
            time.sleep(0.1)
        worst = 0
        for slot in self.slots:
            code = slot.process.returncode if slot.process is not None else 0
            if code != 0:
                worst = 1
                if slot.label not in reported:
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
