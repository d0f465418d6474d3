"""The supervisor's pid file, and how a process is proven to be ours before it is signalled.

A pid alone proves nothing: pids are reused (in containers the supervisor is often pid 1
every time), and any process may have ``queuebox`` and ``start`` in its arguments (``docker
start queuebox-web``). So the pid file carries two proofs, and ``stop`` signals only a process
that passes both:

- **a lock**: the supervisor holds an exclusive ``flock`` on the pid file for as long as it
  lives. The kernel drops it when the process ends, however it ends, so a file whose lock
  nobody holds is stale, whatever pid it names;
- **the process's start**: line 2 holds the supervisor's start time (``/proc/<pid>/stat``
  field 22, in clock ticks since boot) and the boot id; a live process with that pid and
  another start is someone else.

Line 1 is the bare pid, so ``PIDFile=`` (systemd), ``cat`` and ``kill`` read it as usual.

The file is written in full, and locked, under a temporary name, then hard-linked to its
final name, which fails if the name exists: a reader never sees a half-written or unlocked
file, and two supervisors cannot both create it. Replacing a stale file (and ``stop``
removing one) happens under an exclusive ``flock`` on the run folder, so two commands racing
over a stale file cannot both win, and a live supervisor's file is never removed.

Signals go through a pidfd where Linux has them (opened before the checks, so the process
checked is the process signalled even if it ends and its pid is reused in between).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from queuebox.errors import QueueboxError

__all__ = [
    "AlreadyRunning",
    "PidFile",
    "SupervisorRecord",
    "process_alive",
    "process_identity",
    "read_pid",
    "read_supervisor",
    "remove_if_stale",
    "same_process",
    "signal_process",
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


def process_identity(pid: int) -> str | None:
    """What tells process ``pid`` from any later process given the same pid: its start time
    and the boot it started in (``"<pid>:<ticks since boot>@<boot id>"``). ``None`` when it
    is gone, a zombie, or there is no ``/proc`` to ask."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    if len(fields) < 20 or fields[0] == "Z":
        return None
    return f"{pid}:{fields[19]}@{_boot_id()}"


def same_process(pid: int, identity: str | None) -> bool:
    """Whether ``pid`` is alive and is the process whose identity was ``identity``. Without
    a recorded identity (or without ``/proc``) nothing is proven: ``False``."""
    return identity is not None and process_identity(pid) == identity


def signal_process(pid: int, identity: str | None, signum: int) -> bool:
    """Send ``signum`` to ``pid`` only if it still is the process ``identity`` names; say
    whether it was sent."""
    with _pidfd(pid) as fd:
        if not same_process(pid, identity):
            return False
        try:
            if fd is not None:
                signal.pidfd_send_signal(fd, signum)
            else:
                os.kill(pid, signum)
        except ProcessLookupError:
            return False
    return True


def read_pid(path: Path) -> int | None:
    """The pid on the first line of ``path``, or ``None`` when there is no file or no pid."""
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return _parse(text)[0]


@dataclass(frozen=True)
class SupervisorRecord:
    """What a pid file says, and whether its proofs hold."""

    pid: int | None
    identity: str | None
    #: Some process holds the file's lock: the supervisor that wrote it is alive.
    locked: bool

    @property
    def running(self) -> bool:
        """The file's supervisor runs, beyond doubt: the lock is held, and (where ``/proc``
        can say) the pid is the process that started at the recorded time."""
        if not self.locked or self.pid is None:
            return False
        if self.identity is None or process_identity(os.getpid()) is None:
            return process_alive(self.pid)  # no start time to compare: the lock is the proof
        return same_process(self.pid, self.identity)


def read_supervisor(path: Path) -> SupervisorRecord | None:
    """Read the pid file and test its lock; ``None`` when there is no file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        with os.fdopen(os.dup(fd)) as handle:
            pid, identity = _parse(handle.read())
        return SupervisorRecord(pid, identity, locked=_is_locked(fd))
    finally:
        os.close(fd)


def remove_if_stale(path: Path) -> bool:
    """Remove the pid file if its supervisor is gone (under the run folder's lock, so that a
    supervisor starting meanwhile keeps its fresh file); say whether it was removed."""
    if not path.parent.is_dir():
        return False
    with _locked(path.parent):
        record = read_supervisor(path)
        if record is None or record.running:
            return False
        path.unlink(missing_ok=True)
        return True


class PidFile:
    """``acquire`` on start (refused while a live supervisor holds it), ``release`` on exit.

    The lock lives as long as this process keeps the file open: from ``acquire`` to
    ``release``, or to the process's end.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        #: The pid of a stale file that ``acquire`` replaced, to say so in the log.
        self.replaced_stale: int | None = None
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(self.path.parent):
            for _ in range(2):
                if self._create():
                    return
                record = read_supervisor(self.path)
                if record is not None and record.running and record.pid is not None:
                    raise AlreadyRunning(record.pid, self.path)
                self.replaced_stale = None if record is None else record.pid
                self.path.unlink(missing_ok=True)
        raise QueueboxError(f"cannot create the pid file {self.path}")  # pragma: no cover

    def release(self) -> None:
        """Remove the file if it is still ours, and drop the lock."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def _create(self) -> bool:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            identity = process_identity(os.getpid())
            text = f"{os.getpid()}\n" + (f"start={identity}\n" if identity else "")
            os.write(fd, text.encode())
            os.fsync(fd)
            os.link(temporary, self.path)
        except FileExistsError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        finally:
            temporary.unlink(missing_ok=True)
        self._fd = fd
        return True


def _parse(text: str) -> tuple[int | None, str | None]:
    lines = text.splitlines()
    first = lines[0].strip() if lines else ""
    pid = int(first) if first.isdigit() and 0 < int(first) < 2**31 else None
    identity = None
    for line in lines[1:]:
        key, _, value = line.strip().partition("=")
        if key == "start" and value:
            identity = value
    return pid, identity


def _is_locked(fd: int) -> bool:
    """Whether another process holds a lock on the file open as ``fd``. A shared lock is
    asked for, so that two readers testing at once never take each other for the owner."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


@contextlib.contextmanager
def _pidfd(pid: int) -> Iterator[int | None]:
    """A pidfd for ``pid`` (``None`` where Linux or Python has none, or it is gone)."""
    try:
        fd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


_BOOT_ID: list[str] = []


def _boot_id() -> str:
    if not _BOOT_ID:
        try:
            with open("/proc/sys/kernel/random/boot_id") as handle:
                _BOOT_ID.append(handle.read().strip())
        except OSError:
            _BOOT_ID.append("")
    return _BOOT_ID[0]
