"""Rows to records, one row at a time: a row the store holds but queuebox cannot read (a time
out of range, bytes that are not UTF-8, a column written past queuebox) becomes an
``unreadable_record`` for that row alone, so that it never hides the others or stops a worker.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from queuebox.backends.records import JobRecord, JobState, Row, unreadable_record

__all__ = ["UnreadableColumn", "read_records", "record_from_row"]

_TEXT_COLUMNS = ("name", "handler", "queue", "locked_by", "last_error", "unique_key")
_TIME_COLUMNS = ("run_at", "created_at", "updated_at")
_OPTIONAL_TIMES = ("locked_at", "lock_expires_at", "failed_at", "completed_at", "cancelled_at")


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

    def when(column: str) -> datetime:
        value = row[column]
        try:
            return moment(value)
        except (ValueError, TypeError, OverflowError, ArithmeticError) as exc:
            raise UnreadableColumn(f"column {column} holds {value!r}: {exc}") from None

    def maybe(column: str) -> datetime | None:
        return None if row[column] is None else when(column)

    text = {column: _text(column, row[column]) for column in _TEXT_COLUMNS}
    return JobRecord(
        id=str(row["id"]),
        name=text["name"] or "",
        handler=text["handler"] or "",
        queue=text["queue"] or "",
        priority=_integer("priority", row["priority"]),
        run_at=when("run_at"),
        attempts=_integer("attempts", row["attempts"]),
        state=JobState(row["state"]),
        created_at=when("created_at"),
        updated_at=when("updated_at"),
        locked_at=maybe("locked_at"),
        locked_by=text["locked_by"],
        lock_expires_at=maybe("lock_expires_at"),
        lock_token=row["lock_token"] if with_token else None,
        last_error=text["last_error"],
        failed_at=maybe("failed_at"),
        completed_at=maybe("completed_at"),
        unique_key=text["unique_key"],
        cancelled_at=maybe("cancelled_at"),
    )


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
    clock = functools.cache(now)
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
