"""The supervisor's pid file: created atomically, checked for staleness, removed on exit.

The file is written in full under a temporary name and then hard-linked to its final name,
which fails if the name exists: a reader never sees a half-written pid, and two supervisors
cannot both create it. Deciding that an existing file is stale and replacing it happens under
an exclusive ``flock`` on the run folder, so two ``start`` commands racing over a stale file
cannot both win.

A pid file is stale when its process is gone (or a zombie), or when that pid now belongs to
something that is not a queuebox supervisor (pids are reused, notably in containers where the
supervisor is often pid 1 every time).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from collections.abc import Iterator
from pathlib import Path

from queuebox.errors import QueueboxError
from queuebox.runner.proctitle import SUPERVISOR_NAME

__all__ = [
    "AlreadyRunning",
    "PidFile",
    "is_queuebox_process",
    "is_supervisor",
    "process_alive",
    "read_pid",
    "signal_if_queuebox",
]


class AlreadyRunning(QueueboxError):
    """A live supervisor already holds the pid file."""

    def __init__(self, pid: int, path: Path) -> None:
        super().__init__(
            f"queuebox is already running (supervisor pid {pid}, pid file {path}); "
            "use 'queuebox restart' to replace it, or 'queuebox stop' first"
        )
        self.pid = pid
        self.path = path


def read_pid(path: Path) -> int | None:
    """The pid in ``path``, or ``None`` when there is no file or it holds no pid."""
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, under another user
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The state follows the parenthesised name, which may itself hold spaces.
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return not os.path.isdir("/proc")  # no /proc at all (macOS): trust os.kill
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return None


def is_queuebox_process(pid: int) -> bool:
    """Whether ``pid`` is alive and runs queuebox (a supervisor or a worker)."""
    if not process_alive(pid):
        return False
    comm, argv = _comm(pid), _cmdline(pid)
    if comm is None and argv is None:
        return True  # no /proc to ask: the pid is all we have
    return (comm or "").startswith("qb ") or any("queuebox" in arg for arg in argv or [])


def is_supervisor(pid: int) -> bool:
    """Whether ``pid`` is alive and is a queuebox supervisor (not a reused pid)."""
    if not process_alive(pid):
        return False
    comm, argv = _comm(pid), _cmdline(pid)
    if comm is None and argv is None:
        return True
    if comm == SUPERVISOR_NAME:
        return True
    argv = argv or []
    return any("queuebox" in arg for arg in argv) and any(
        arg in ("supervise", "start", "restart") or arg.startswith("queuebox supervisor")
        for arg in argv
    )


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


class PidFile:
    """``acquire`` on start (refused while a live supervisor holds it), ``release`` on exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: The pid of a stale file that ``acquire`` replaced, to say so in the log.
        self.replaced_stale: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path.parent):
            for _ in range(2):
                if self._create():
                    return
                pid = read_pid(self.path)
                if pid is not None and pid != os.getpid() and is_supervisor(pid):
                    raise AlreadyRunning(pid, self.path)
                self.replaced_stale = pid
                self.path.unlink(missing_ok=True)
        raise QueueboxError(f"cannot create the pid file {self.path}")  # pragma: no cover

    def release(self) -> None:
        """Remove the file if it is still ours."""
        if read_pid(self.path) == os.getpid():
            self.path.unlink(missing_ok=True)

    def _create(self) -> bool:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        temporary.write_text(f"{os.getpid()}\n")
        try:
            os.link(temporary, self.path)
        except FileExistsError:
            return False
        finally:
            temporary.unlink(missing_ok=True)
        return True


def signal_if_queuebox(pid: int, signum: int = signal.SIGKILL) -> bool:
    """Send ``signum`` to ``pid`` only if it still is a queuebox process; say whether sent."""
    if not is_queuebox_process(pid):
        return False
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True
