"""The policy of outcomes, decided once for every store: the backoff after an error, the
text an error leaves in ``last_error``, and the tally a worker keeps."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field

__all__ = [
    "BACKOFF_ATTEMPTS_CAP",
    "MAX_ERROR_CHARS",
    "WorkSummary",
    "backoff_delay",
    "format_error",
]

MAX_ERROR_CHARS = 8192
_MAX_MESSAGE_CHARS = 2048
_CUT = " [...]"
_OLDER_FRAMES_CUT = "[... older frames cut ...]\n"


#: The backoff stops growing here (500 ** 4 s, about 1,980 years). Past about 700 attempts
#: ``attempts ** 4`` seconds from now is after 9999-12-31, which no store holds: SQLite wrote
#: a run time it could not read back, the in-memory store raised OverflowError out of the
#: worker. A job class's ``max_attempts`` is not bounded (the command line's is, at 500).
BACKOFF_ATTEMPTS_CAP = 500


def backoff_delay(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones (RedwoodJS's rule,
    ``attempts ** 4``, up to ``BACKOFF_ATTEMPTS_CAP`` attempts)."""
    return float(min(attempts, BACKOFF_ATTEMPTS_CAP) ** 4)


def format_error(exc: BaseException, limit: int = MAX_ERROR_CHARS) -> str:
    """``Type: message``, then the traceback, within ``limit`` characters.

    Every message (the head's, and those inside the traceback, chained exceptions included)
    is cut to 2 KiB first; then the traceback loses its oldest frames, so that what is kept
    always ends with the frame that raised and the exception it raised.
    """
    head = _exception_line(exc)
    room = limit - len(head) - 1
    if room <= 0:
        return head[:limit]
    trace = _traceback(exc)
    if len(trace) > room:
        trace = _OLDER_FRAMES_CUT + trace[len(trace) - room + len(_OLDER_FRAMES_CUT) :]
    return f"{head}\n{trace}"


def _exception_line(exc: BaseException) -> str:
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not lose the error itself
        message = f"<unprintable {type(exc).__qualname__}>"
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[:_MAX_MESSAGE_CHARS] + _CUT
    name = type(exc).__qualname__
    return f"{name}: {message}" if message else name


def _traceback(exc: BaseException) -> str:
    """What ``traceback.format_exception`` prints, with each message cut."""
    chain: list[tuple[BaseException, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    link = ""
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSE
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _CONTEXT
        else:
            current = None
    parts: list[str] = []
    for error, link_to_next in reversed(chain):
        if error.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_tb(error.__traceback__))
        parts.append(_exception_line(error) + "\n")
        if link_to_next:
            parts.append(link_to_next)
    return "".join(parts)


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


@dataclass
class WorkSummary:
    """What a worker did. ``retried`` counts attempts that raised and will run again;
    ``retried_jobs`` the distinct jobs they belong to."""

    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    cancelled: int = 0
    timed_out: int = 0
    lock_lost: int = 0
    released: int = 0
    failed_ids: list[str] = field(default_factory=list)
    retried_ids: set[str] = field(default_factory=set)

    @property
    def retried_jobs(self) -> int:
        return len(self.retried_ids)

    @property
    def raised(self) -> bool:
        return self.retried > 0 or self.failed > 0

    def add(self, other: WorkSummary) -> None:
        self.succeeded += other.succeeded
        self.retried += other.retried
        self.failed += other.failed
        self.cancelled += other.cancelled
        self.timed_out += other.timed_out
        self.lock_lost += other.lock_lost
        self.released += other.released
        self.failed_ids.extend(other.failed_ids)
        self.retried_ids |= other.retried_ids
