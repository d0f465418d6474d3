"""``JobSearch`` on the Redis store: browsing jobs newest first, at any size.

Each queue is read by ``search.lua``, newest job number first, from the indexes that hold
its jobs (so a page costs what it returns plus the jobs it passes over, never a walk through
the whole queue). Across queues the pages are merged by ``created_at`` (then queue, then job
number), newest first; the cursor holds, for each queue still to read, the job number to go
on below, so page 1,000 costs what page 1 costs.

The script narrows a text filter by bytes; the client decides every filter exactly on the
decoded record (``str.casefold``, as the memory store does). A call looks at no more than
``scan_limit`` records (in ``search.lua`` calls of at most ``_PER_CALL`` each), so a filter
that matches few of a queue's million jobs returns a short (perhaps empty) page with a cursor
to go on from instead of reading the whole queue in one request.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from queuebox.backends.base import JobPage, JobRecord, JobSearch, JobState
from queuebox.backends.redis_codec import decode_record, to_ms
from queuebox.backends.redis_keys import check_queue
from queuebox.backends.redis_parts import RedisParts
from queuebox.errors import ValidationError
from queuebox.json_text import load_json
from queuebox.validation import check_page_limit, check_scan_limit, is_queue_name

if TYPE_CHECKING:
    from queuebox.backends.redis_scripts import Call

__all__ = ["RedisJobSearch"]

_PER_CALL = 2000  # records one search.lua call looks at at most: bounds how long it blocks
_TOP = 0  # a queue's position before its first page: from its newest job


@dataclass(slots=True)
class _Reading:
    """What one search call has read of one queue so far."""

    queue: str
    position: int  # the next search.lua call looks below this job number (0: from the top)
    found: list[tuple[tuple[float, str, int], JobRecord]] = field(default_factory=list)
    #: Every job at or above this key was looked at; those below were not (``None``: none
    #: looked at yet).
    frontier: tuple[float, str, int] | None = None
    exhausted: bool = False
    used: int = 0  # matches handed to the page


class RedisJobSearch(RedisParts, JobSearch):
    def search_jobs(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        name: str | None = None,
        text: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        wanted = _Filters.of(state, name, text)
        check_page_limit(limit)
        with self._translated_errors():
            if cursor is not None:
                positions = _read_cursor(cursor, queue)
            elif queue is not None:
                positions = {check_queue(queue): _TOP}
            else:
                positions = dict.fromkeys(self._registry.names(None), _TOP)
            readings = [_Reading(q, at) for q, at in sorted(positions.items())]
            budget = check_scan_limit(self.scan_limit)
            while True:
                page = _merge(readings, limit)
                active = [r for r in readings if not r.exhausted and len(r.found) < limit]
                if len(page) == limit or not active or budget <= 0:
                    break
                budget -= self._read_more(active, wanted, limit, budget)
        return JobPage([record for _, record in page], _next_cursor(readings, page))

    def _read_more(
        self, readings: Sequence[_Reading], wanted: _Filters, limit: int, budget: float
    ) -> int:
        """One ``search.lua`` call per queue in ``readings``, pipelined; returns how many
        records they looked at."""
        each = int(max(1, min(_PER_CALL, budget // len(readings))))
        calls: list[Call] = [
            (
                "search",
                self._keys(reading.queue),
                [
                    reading.position,
                    wanted.state,
                    wanted.name or "",
                    wanted.needle,
                    wanted.mode,
                    limit - len(reading.found),
                    each,
                ],
            )
            for reading in readings
        ]
        replies = self._scripts.call_many(calls)
        looked = 0
        for reading, reply in zip(readings, replies, strict=True):
            now_ms, done, lowest, created, seen = (int(value) for value in reply[:5])
            looked += seen
            for number, raw in zip(reply[5::2], reply[6::2], strict=True):
                record = decode_record(reading.queue, int(number), raw, now_ms)
                if wanted.match(record):
                    key = (to_ms(record.created_at), reading.queue, int(number))
                    reading.found.append((key, record))
            if lowest:
                reading.position = lowest
                # unknown created_at (unreadable records only): nothing may pass it yet
                reading.frontier = (created if created else math.inf, reading.queue, lowest)
            reading.exhausted = bool(done)
        return max(looked, 1)


@dataclass(frozen=True, slots=True)
class _Filters:
    state: str  # '' for any
    name: str | None
    text: str | None  # casefolded
    needle: str  # what search.lua looks for (ASCII text only)
    mode: str  # search.lua's ARGV[5]

    @classmethod
    def of(cls, state: object, name: object, text: object) -> _Filters:
        if state is not None and not isinstance(state, JobState):
            raise ValidationError(f"state={state!r} is not valid: give a JobState or None")
        if name is not None and not isinstance(name, str):
            raise ValidationError(f"name={name!r} is not valid: give a job name or None")
        if text is not None and not isinstance(text, str):
            raise ValidationError(f"text={text!r} is not valid: give a string or None")
        folded = text.casefold() if text else None
        if folded is None:
            return cls(state.value if state else "", name, None, "", "0")
        ascii_text = folded.isascii()
        return cls(
            state.value if state else "",
            name,
            folded,
            folded if ascii_text else "",
            "1" if ascii_text else "2",
        )

    def match(self, record: JobRecord) -> bool:
        """The exact test, on the decoded record (the script only narrows)."""
        if self.state and record.state.value != self.state:
            return False
        if self.name is not None and record.name != self.name:
            return False
        if self.text is None:
            return True
        return self.text in record.handler.casefold() or (
            record.last_error is not None and self.text in record.last_error.casefold()
        )


def _merge(
    readings: Sequence[_Reading], limit: int
) -> list[tuple[tuple[float, str, int], JobRecord]]:
    """Up to ``limit`` matches, newest first, that no queue can still outrank: a queue's
    matches come in its own order (a prefix of each), and a match is taken only when every
    queue read no further than it has nothing newer left to look at."""
    heads = dict.fromkeys((r.queue for r in readings), 0)
    page: list[tuple[tuple[float, str, int], JobRecord]] = []
    for reading in readings:
        reading.used = 0
    while len(page) < limit:
        candidates = [r for r in readings if heads[r.queue] < len(r.found)]
        if not candidates:
            break
        best = max(candidates, key=lambda r: r.found[heads[r.queue]][0])
        key = best.found[heads[best.queue]][0]
        if any(
            r is not best
            and not r.exhausted
            and heads[r.queue] >= len(r.found)
            and (r.frontier is None or r.frontier > key)
            for r in readings
        ):
            break  # a queue not read far enough may hold something newer
        page.append(best.found[heads[best.queue]])
        heads[best.queue] += 1
        best.used += 1
    return page


def _next_cursor(
    readings: Sequence[_Reading], page: Sequence[tuple[tuple[float, str, int], JobRecord]]
) -> str | None:
    """Where each queue goes on: below its last match on the page, just above its first
    match left off, or below what it looked at; a queue read to its end and fully shown is
    left out. ``None`` when none is left."""
    positions: dict[str, int] = {}
    for reading in readings:
        if reading.used < len(reading.found):
            positions[reading.queue] = reading.found[reading.used][0][2] + 1
        elif not reading.exhausted:
            positions[reading.queue] = reading.position
    if not positions:
        return None
    text = json.dumps(positions, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _read_cursor(cursor: object, queue: str | None) -> dict[str, int]:
    bad = ValidationError(
        f"cursor={cursor!r} is not one this store's search_jobs returned: pass a page's "
        "next_cursor unchanged, or None for the first page"
    )
    if not isinstance(cursor, str) or len(cursor) > 100_000:
        raise bad
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        positions: Any = load_json(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad from None
    if not isinstance(positions, dict) or not all(
        is_queue_name(q) and type(at) is int and at >= 0 for q, at in positions.items()
    ):
        raise bad
    if queue is not None and set(positions) - {check_queue(queue)}:
        raise ValidationError(
            "the cursor belongs to a search over other queues: give the same filters as "
            "the page it came from"
        )
    return positions
