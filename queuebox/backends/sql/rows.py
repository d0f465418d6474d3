"""Rows to records, one row at a time: a row the store holds but queuebox cannot read (a time
out of range, bytes that are not UTF-8, a column written past queuebox) becomes an
``unreadable_record`` for that row alone, so that it never hides the others or stops a worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from queuebox.backends.records import JobRecord, JobState, Row, job_record, unreadable_record

__all__ = ["UnreadableColumn", "read_records", "record_from_row"]

_TEXT_COLUMNS = ("name", "handler", "queue", "locked_by", "last_error", "unique_key")
_TIME_COLUMNS = ("run_at", "created_at", "updated_at")
_OPTIONAL_TIMES = ("locked_at", "lock_expires_at", "failed_at", "completed_at", "cancelled_at")
#: A state by its stored value: a dict lookup, where ``JobState(value)`` runs the enum's
#: Python-level ``__call__`` for every row.
_STATES = {state.value: state for state in JobState}


class UnreadableColumn(ValueError):
    """One column of a row cannot be read; the message says which and why."""


def _text(column: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.isascii()):
        return value
    if not isinstance(value, str):
        raise UnreadableColumn(f"column {column} holds {type(value).__name__}, not text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A driver decoded bytes that are not UTF-8 with surrogate escapes (see the dialects).
        raise UnreadableColumn(f"column {column} holds bytes that are not UTF-8 text") from None
    return value


def _integer(column: str, value: Any) -> int:
    if type(value) is not int:
        raise UnreadableColumn(f"column {column} holds {value!r}, not an integer")
    return value


def record_from_row(
    row: Row, moment: Callable[[Any], datetime], *, with_token: bool = False
) -> JobRecord:
    """The record of a row whose columns are named as the record's fields, plus the
    ``state`` the query derived on the store's clock. ``moment`` turns the store's time
    values into aware UTC datetimes. Raises ``UnreadableColumn`` for a row it cannot read."""
    try:
        record = _record(row, moment, with_token)
    except (ValueError, TypeError, OverflowError, ArithmeticError, AttributeError):
        _find_unreadable(row, moment)
        raise
    # Text that is not ASCII may carry the surrogate escapes of bytes that are not UTF-8.
    if not (record.handler.isascii() and record.name.isascii() and record.queue.isascii()):
        _find_unreadable(row, moment)
    for text in (record.locked_by, record.last_error, record.unique_key):
        if text is not None and not text.isascii():
            _find_unreadable(row, moment)
    return record


def _record(row: Row, moment: Callable[[Any], datetime], with_token: bool) -> JobRecord:
    """The fast path: every row queuebox wrote reads here without a check of its own."""
    locked_at, expires, failed_at = row["locked_at"], row["lock_expires_at"], row["failed_at"]
    completed_at, cancelled_at = row["completed_at"], row["cancelled_at"]
    priority, attempts = row["priority"], row["attempts"]
    if type(priority) is not int or type(attempts) is not int:
        raise TypeError("priority and attempts must be integers")
    return job_record(
        id=str(row["id"]),
        name=row["name"],
        handler=row["handler"],
        queue=row["queue"],
        priority=priority,
        run_at=moment(row["run_at"]),
        attempts=attempts,
        # JobState(value) only for a value that is no state: it raises the ValueError.
        state=_STATES.get(row["state"]) or JobState(row["state"]),
        created_at=moment(row["created_at"]),
        updated_at=moment(row["updated_at"]),
        locked_at=None if locked_at is None else moment(locked_at),
        locked_by=row["locked_by"],
        lock_expires_at=None if expires is None else moment(expires),
        lock_token=row["lock_token"] if with_token else None,
        last_error=row["last_error"],
        failed_at=None if failed_at is None else moment(failed_at),
        completed_at=None if completed_at is None else moment(completed_at),
        unique_key=row["unique_key"],
        cancelled_at=None if cancelled_at is None else moment(cancelled_at),
        limit_key=_optional(row, "limit_key"),
    )


def _optional(row: Row, column: str) -> Any:
    """A column that a dialect's schema may not have (yet): ``None`` when it is missing."""
    try:
        return row[column]
    except (KeyError, IndexError):
        return None


def _find_unreadable(row: Row, moment: Callable[[Any], datetime]) -> None:
    """Raise ``UnreadableColumn`` naming the first column queuebox cannot read, if any."""
    for column in _TEXT_COLUMNS:
        _text(column, row[column])
    _integer("priority", row["priority"])
    _integer("attempts", row["attempts"])
    for column in (*_TIME_COLUMNS, *_OPTIONAL_TIMES):
        value = row[column]
        if value is None and column in _OPTIONAL_TIMES:
            continue
        try:
            moment(value)
        except (ValueError, TypeError, OverflowError, ArithmeticError, AttributeError) as exc:
            raise UnreadableColumn(f"column {column} holds {value!r}: {exc}") from None
    if row["state"] not in JobState.__members__.values():
        raise UnreadableColumn(f"column state holds {row['state']!r}")


def _shown(value: Any) -> str:
    """Text for a message or a placeholder field, whatever the column held."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def read_records(
    rows: Iterable[Row],
    moment: Callable[[Any], datetime],
    now: Callable[[], datetime],
    *,
    with_token: bool = False,
) -> list[JobRecord]:
    """Records of ``rows`` in order; an unreadable row becomes an ``unreadable_record``
    (holding its lock token when ``with_token``: the worker then fails it at once).
    ``now`` (the store's clock) is asked only when a row is unreadable."""
    moments: list[datetime] = []

    def clock() -> datetime:
        if not moments:
            moments.append(now())
        return moments[0]

    records = []
    for row in rows:
        try:
            records.append(record_from_row(row, moment, with_token=with_token))
        except (UnreadableColumn, ValueError, TypeError, KeyError) as exc:
            attempts = row["attempts"]
            records.append(
                unreadable_record(
                    _shown(row["id"]),
                    _shown(row["queue"]),
                    str(exc) if isinstance(exc, UnreadableColumn) else f"{exc!r} in {row!r}",
                    now=clock(),
                    lock_token=row["lock_token"] if with_token else None,
                    raw_handler=_shown(row["handler"]),
                    attempts=attempts if type(attempts) is int else 0,
                )
            )
    return records
