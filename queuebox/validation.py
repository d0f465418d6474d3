"""Input checks done once, in the core, before anything reaches a store.

Each check raises a ``ValidationError`` subclass whose message names the bad value and says
what is accepted, so a caller can fix the call without reading the source.
"""

from __future__ import annotations

import math
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

from queuebox.backends.records import EARLIEST_RUN_AT, LATEST_RUN_AT
from queuebox.errors import (
    InvalidArguments,
    InvalidPriority,
    InvalidQueueName,
    InvalidSchedule,
    ValidationError,
)

__all__ = [
    "MAX_NESTING",
    "MAX_PAGE_LIMIT",
    "check_arguments",
    "check_job_name",
    "check_page_limit",
    "check_priority",
    "check_queue_name",
    "check_wait",
    "check_wait_until",
    "is_queue_name",
    "is_short_int",
]

MAX_NESTING = 64
# Python writes ints of up to sys.get_int_max_str_digits() digits (4,300 by default) as text;
# anything this short (about 1,200 digits) needs no closer look.
_SHORT_INT_BITS = 4000
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_MAX_JOB_NAME = 200
#: The most jobs one page of ``JobSearch.search_jobs`` holds, on every store.
MAX_PAGE_LIMIT = 10_000
#: Exact types that are JSON values whatever their value (floats and strings need a look).
_PLAIN = frozenset({int, bool, type(None)})


def is_queue_name(queue: object) -> TypeGuard[str]:
    return isinstance(queue, str) and _QUEUE_NAME.fullmatch(queue) is not None


def check_queue_name(queue: object) -> str:
    if not is_queue_name(queue):
        raise InvalidQueueName(
            f"queue name {queue!r} is not valid: use 1 to 64 letters, digits, '_', '.' or '-'"
        )
    return queue


def check_priority(priority: object) -> int:
    if type(priority) is not int or not 1 <= priority <= 100:
        raise InvalidPriority(
            f"priority {priority!r} is not valid: use a whole number from 1 (runs first) to 100"
        )
    return priority


def check_job_name(name: object) -> str:
    if (
        not isinstance(name, str)
        or not 1 <= len(name) <= _MAX_JOB_NAME
        or not name.isprintable()
        or name != name.strip()
    ):
        raise ValidationError(
            f"job name {name!r} is not valid: use 1 to {_MAX_JOB_NAME} printable characters "
            "without leading or trailing spaces"
        )
    return name


def check_page_limit(limit: object) -> int:
    """A ``search_jobs`` page size, checked the same way by every store."""
    if type(limit) is not int or not 1 <= limit <= MAX_PAGE_LIMIT:
        raise ValidationError(f"limit={limit!r} is not valid: give 1 to {MAX_PAGE_LIMIT}")
    return limit


def check_scan_limit(scan_limit: object) -> int:
    """A store's ``JobSearch.scan_limit``: at least one row, or a page would never get past
    the rows before its cursor (every next cursor the same, and a bulk action looping)."""
    if type(scan_limit) is not int or scan_limit < 1:
        raise ValidationError(
            f"scan_limit={scan_limit!r} is not valid: give the most rows one search may look "
            "at, a whole number of at least 1 (the default is 10,000)"
        )
    return scan_limit


def check_wait(wait: object) -> float:
    """Seconds from now, as a non-negative finite float that keeps the run time within what
    every store can hold (until ``LATEST_RUN_AT``)."""
    if isinstance(wait, timedelta):
        seconds = wait.total_seconds()
    elif isinstance(wait, int | float) and not isinstance(wait, bool):
        try:
            seconds = float(wait)
        except OverflowError:
            seconds = math.inf
    else:
        raise InvalidSchedule(
            f"wait={wait!r} is not valid: give a number of seconds or a datetime.timedelta"
        )
    if math.isnan(seconds) or seconds < 0:
        raise InvalidSchedule(f"wait={wait!r} is not valid: it must be zero or more seconds")
    # A day of margin: the store adds the wait to its own clock, which may run ahead of ours.
    longest = (LATEST_RUN_AT - datetime.now(UTC)).total_seconds() - 86400
    if seconds > longest:
        shown = f"{seconds:.3g}" if math.isfinite(seconds) else "a number too large for a float"
        if isinstance(wait, timedelta | float) or len(str(wait)) < 40:
            shown = repr(wait)
        raise InvalidSchedule(
            f"wait={shown} is too long: a job must run by {LATEST_RUN_AT:%Y-%m-%d} UTC, so "
            f"wait at most {longest:.0f} seconds (about {longest / 31_557_600:.0f} years)"
        )
    return seconds


def check_wait_until(when: object) -> datetime:
    """An aware datetime within what every store can hold, converted to UTC."""
    if not isinstance(when, datetime):
        raise InvalidSchedule(
            f"wait_until={when!r} is not valid: give a timezone-aware datetime.datetime"
        )
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidSchedule(
            f"wait_until={when!r} has no time zone, so it is ambiguous: "
            "give an aware datetime, e.g. datetime(2027, 1, 1, 3, tzinfo=timezone.utc)"
        )
    try:
        moment = when.astimezone(UTC)
    except OverflowError:  # year 1 east of UTC, or year 9999 west of it
        moment = None
    if moment is None or not EARLIEST_RUN_AT <= moment <= LATEST_RUN_AT:
        raise InvalidSchedule(
            f"wait_until={when.isoformat()} is out of range: give a time between "
            f"{EARLIEST_RUN_AT:%Y-%m-%d %H:%M:%S} and {LATEST_RUN_AT:%Y-%m-%d %H:%M:%S} UTC"
        )
    return moment


def check_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raise ``InvalidArguments`` naming the path of the first value that is not JSON."""
    if not kwargs and all(type(value) in _PLAIN and is_short_int(value) for value in args):
        return  # the common call: a few ints, bools or None
    for index, value in enumerate(args):
        _check_json_value(value, f"args[{index}]", 0)
    for key, value in kwargs.items():
        _check_json_value(value, f"kwargs[{key!r}]", 0)


def _check_json_value(value: Any, path: str, depth: int) -> None:
    # Exact types only: a subclass (an IntEnum, a str subclass) would come back as its base
    # type, so the job would not receive what was scheduled.
    kind = type(value)
    if value is None or kind is bool:
        return
    if kind is int:
        if not is_short_int(value):
            _check_int_digits(value, path)
        return
    if kind is float:
        if not math.isfinite(value):
            raise InvalidArguments(f"{path}: {value!r} is not a JSON value (not a finite number)")
        return
    if kind is str:
        _check_text(value, path)
        return
    if depth >= MAX_NESTING:
        raise InvalidArguments(
            f"{path}: nested more than {MAX_NESTING} levels deep (is the structure cyclic?)"
        )
    if kind is list:
        for index, item in enumerate(value):
            _check_json_value(item, f"{path}[{index}]", depth + 1)
        return
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidArguments(
                    f"{path}: key {key!r} is a {type(key).__name__}; JSON object keys must be str"
                )
            _check_text(key, f"{path} key {key!r}")
            _check_json_value(item, f"{path}[{key!r}]", depth + 1)
        return
    hint = " (use a list)" if kind is tuple else ""
    raise InvalidArguments(
        f"{path}: {kind.__name__} is not a JSON value{hint}; arguments may be None, bool, int, "
        "finite float, str, list or dict with str keys"
    )


def is_short_int(value: Any) -> bool:
    """True for ints far below the length Python refuses to write as text (and None, bools)."""
    return type(value) is not int or value.bit_length() <= _SHORT_INT_BITS


def _check_int_digits(value: int, path: str) -> None:
    try:
        str(value)
    except ValueError:
        raise InvalidArguments(
            f"{path}: an int of more than {sys.get_int_max_str_digits()} digits cannot be "
            "written as JSON; pass it as a string"
        ) from None


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArguments(
            f"{path}: the string holds a lone surrogate and cannot be stored as UTF-8"
        ) from None
