"""Readable process names in ``ps``, ``top`` and ``pgrep``.

Every queuebox process gets a short name (Linux's 15-byte ``comm``): ``qb supervisor``,
``qb default#1``, ``qb email#2``. It is set with ``prctl(PR_SET_NAME)`` through ctypes, so it
costs no dependency; ``ps -e``, ``top``, ``pgrep -l`` and ``/proc/<pid>/comm`` show it.

When the optional ``setproctitle`` package is installed, the full command line shown by
``ps aux`` is replaced too (``queuebox worker email#2 (queues: email)``); without it
``ps aux`` keeps showing the real command, which already carries ``--child-label email#2``.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMM_LIMIT", "SUPERVISOR_NAME", "set_process_title", "short_name"]

COMM_LIMIT = 15  # bytes the kernel keeps of a task name (16 with the final NUL)
SUPERVISOR_NAME = "qb supervisor"
_PR_SET_NAME = 15


def short_name(label: str) -> str:
    """``qb <label>`` cut to 15 bytes, keeping a worker's ``#index`` visible."""
    name = f"qb {label}"
    if len(name.encode()) <= COMM_LIMIT:
        return name
    head, sep, index = label.rpartition("#")
    if not sep:
        return name.encode()[:COMM_LIMIT].decode(errors="ignore")
    room = COMM_LIMIT - len(f"qb ~#{index}".encode())
    return f"qb {head.encode()[: max(room, 0)].decode(errors='ignore')}~#{index}"


def set_process_title(label: str, detail: str = "") -> None:
    """Name this process ``qb <label>``; with setproctitle, ``queuebox <label> <detail>``."""
    try:
        module = importlib.import_module("setproctitle")
    except ImportError:
        pass
    else:
        module.setproctitle(f"queuebox {label} {detail}".strip())
    _set_comm(short_name(label))


def _set_comm(name: str) -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # noqa: PLC0415 - only the processes that set a title pay for it

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:COMM_LIMIT]), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # a name is a convenience: never fail a worker over it
