"""The registry of job classes, by name.

Workers run only jobs registered here, by the modules they were told to import (``--app``),
so a stored payload can name a job but never an arbitrary import path.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from queuebox.errors import DuplicateJobName, UnknownJob

if TYPE_CHECKING:
    from queuebox.job import Job

__all__ = ["get", "isolated", "names", "recurring", "register"]

_jobs: dict[str, type[Job]] = {}
_lock = threading.Lock()


def register(job_class: type[Job]) -> None:
    name = job_class.name
    with _lock:
        existing = _jobs.get(name)
        if existing is not None and existing is not job_class:
            raise DuplicateJobName(
                f"a job named {name!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}; job names must be unique: "
                f"rename one class or give it name = '...'"
            )
        _jobs[name] = job_class


def get(name: str) -> type[Job]:
    try:
        return _jobs[name]
    except KeyError:
        raise UnknownJob(
            f"no job named {name!r} is registered in this worker; import the module that "
            "defines it with --app (or QUEUEBOX_APP)"
        ) from None


def names() -> list[str]:
    return sorted(_jobs)


def recurring() -> list[type[Job]]:
    """Registered job classes with a ``cron`` or ``every`` schedule, by name."""
    with _lock:
        return [
            _jobs[name]
            for name in sorted(_jobs)
            if _jobs[name].cron is not None or _jobs[name].every is not None
        ]


@contextlib.contextmanager
def isolated() -> Iterator[None]:
    """Restore the registry on exit, so tests can define jobs freely."""
    with _lock:
        saved = dict(_jobs)
    try:
        yield
    finally:
        with _lock:
            _jobs.clear()
            _jobs.update(saved)
