"""What a benchmark job does: append one byte (or one timestamp line) to a file in /dev/shm.

The harness polls the file sizes, so completion is seen without the job touching the store
or any other service. A worker process learns its file from the environment: the directory
in ``QUEUEBOX_BENCH_MARKS`` and its slot (``0``, ``1``, ...) in ``QUEUEBOX_BENCH_SLOT``;
forked children (RQ's work horse, Celery's pool) inherit both.

The I/O workload's jobs wait ``IO_WAIT`` seconds first, as a job that sends an email waits on
the network: ``time.sleep`` in a sync job (``wait_then_mark``), ``asyncio.sleep`` in an
async one (``await_then_mark``). Every system runs the same two functions.
"""

from __future__ import annotations

import asyncio
import os
import time

__all__ = ["DIR_ENV", "IO_WAIT", "SLOT_ENV", "await_then_mark", "mark", "stamp", "wait_then_mark"]

DIR_ENV = "QUEUEBOX_BENCH_MARKS"
SLOT_ENV = "QUEUEBOX_BENCH_SLOT"
#: Seconds an I/O job waits before it is done (20 ms: a round trip to a mail server, say).
IO_WAIT = 0.02

_fd: int | None = None
_fd_pid = 0


def _file() -> int:
    global _fd, _fd_pid  # noqa: PLW0603 - one open file per process, opened on first use
    if _fd is None or _fd_pid != os.getpid():
        path = os.path.join(os.environ[DIR_ENV], os.environ.get(SLOT_ENV, "0"))
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _fd_pid = os.getpid()
    return _fd


def mark() -> None:
    """One job done: one byte."""
    os.write(_file(), b".")


def stamp(seq: int) -> None:
    """A latency probe's first line: when it started, on the machine-wide monotonic clock."""
    now = time.monotonic_ns()
    os.write(_file(), f"{seq} {now}\n".encode())


def wait_then_mark() -> None:
    """A sync I/O job: block ``IO_WAIT`` seconds (the thread waits, the GIL is free), then
    mark."""
    time.sleep(IO_WAIT)
    mark()


async def await_then_mark() -> None:
    """An async I/O job: wait ``IO_WAIT`` seconds on the event loop, then mark."""
    await asyncio.sleep(IO_WAIT)
    mark()
