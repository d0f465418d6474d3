"""The Redis store's records: how the client reads what the scripts store and return (the
layout is in ``lua/lib.lua`` and ``docs/redis.md``).

Records are msgpack arrays that the scripts pack with Redis's ``cmsgpack``; the client
unpacks them with msgpack's C extension. A record the client cannot read (written past
queuebox, or damaged) becomes an ``unreadable_record`` on its own, never an exception, so one
record never stops a worker or hides the others. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack

from queuebox.backends.records import (
    JobRecord,
    JobState,
    NewJob,
    job_record,
    reclaim_note,
    stored_record,
    unreadable_record,
)
from queuebox.backends.redis_keys import job_id

__all__ = [
    "EPOCH",
    "ClaimedBatch",
    "claim_order",
    "decode_record",
    "from_ms",
    "new_record",
    "record_from_fields",
    "to_ms",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Names of a record's values, in order (``lib.lua``), for the messages of unreadable ones.
_FIELD_NAMES = (
    "name",
    "handler",
    "priority",
    "created_at",
    "run_at - created_at",
    "updated_at - created_at",
    "attempts",
    "locked_at",
    "locked_by",
    "lock_expires_at",
    "lock_token",
    "last_error",
    "failed_at",
    "completed_at",
    "unique_key",
    "cancelled_at",
    "limit_key",
    "max_concurrency",
    "rate limit count",
    "rate limit window",
)
_FIELDS = len(_FIELD_NAMES)
#: The header of a msgpack array of up to 2**32 - 1 values, without its length.
_ARRAY32 = b"\xdd"


def to_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch (rounded down) of an aware datetime."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(milliseconds=1)


def from_ms(value: int) -> datetime:
    return EPOCH + timedelta(milliseconds=value)


def new_record(
    job: NewJob, number: int, run_at: int, now_ms: int, *, times: dict[int, datetime] | None = None
) -> JobRecord:
    """The record of ``job`` as the script just stored it. ``times`` memoises millisecond ->
    datetime across the jobs of one reply."""
    if times is None:
        times = {}
    now = times.get(now_ms)
    if now is None:
        now = times[now_ms] = from_ms(now_ms)
    at = now if run_at == now_ms else times.get(run_at)
    if at is None:
        at = times[run_at] = from_ms(run_at)
    return stored_record(
        job, f"{job.queue}/{number}", at, now, ready=run_at <= now_ms, limit_key=job.limit_key
    )


def claim_order(records: list[JobRecord]) -> list[JobRecord]:
    """``records`` sorted as the contract orders claims: priority, run_at, then age."""

    def key(record: JobRecord) -> tuple[Any, ...]:
        number = record.id.rpartition("/")[2]  # ids this store built: digits, no leading 0
        return (
            record.priority,
            record.run_at,
            record.created_at,
            record.queue,
            len(number),
            number,
        )

    records.sort(key=key)
    return records


class ClaimedBatch:
    """One ``claim.lua`` reply (job number, record, job number, record..., each a msgpack
    value), unpacked in one C call but not yet turned into ``JobRecord`` objects.

    A worker that claims ahead reads a reply, sends its next round trip, then builds
    ``records()`` (the costly part) while the store works on that round trip. A record it
    cannot read becomes an ``unreadable_record`` holding its lock token, alone: the others
    of the batch decode as usual.
    """

    __slots__ = ("_as_bytes", "_now_ms", "_queue", "_values")

    def __init__(self, queue: str, values: list[Any], now_ms: int, *, as_bytes: bool = False):
        self._queue, self._values, self._now_ms = queue, values, now_ms
        self._as_bytes = as_bytes  # strings came as bytes: each record decodes its own

    @classmethod
    def unpack(cls, queue: str, reply: Sequence[Any]) -> ClaimedBatch:
        """From the reply ``{now, how many jobs, the packed values}``."""
        now_ms, count, blob = int(reply[0]), int(reply[1]), reply[2]
        packed = _ARRAY32 + (2 * count).to_bytes(4, "big") + blob
        try:
            return cls(queue, msgpack.unpackb(packed, raw=False), now_ms)
        except ValueError:  # a record with text that is not UTF-8, or a map: read it alone
            values = msgpack.unpackb(packed, raw=True, strict_map_key=False)
            return cls(queue, values, now_ms, as_bytes=True)

    def __len__(self) -> int:
        return len(self._values) // 2

    def records(self) -> list[JobRecord]:
        values, times, now_ms = self._values, dict[int, datetime](), self._now_ms
        records = []
        for number, fields in zip(values[::2], values[1::2], strict=True):
            try:
                values_of = _texts(fields) if self._as_bytes else fields
                record = record_from_fields(
                    self._queue, number, values_of, now_ms, with_token=True, times=times
                )
            except _DECODE_ERRORS as exc:
                record = _unreadable(self._queue, number, fields, now_ms, exc, locked=True)
            records.append(record)
        return claim_order(records)


class _Unreadable(ValueError):
    """A record queuebox cannot read; the message says what is wrong with it."""


_DECODE_ERRORS = (ValueError, TypeError, OverflowError, IndexError, msgpack.UnpackException)


def decode_record(
    queue: str,
    number: int,
    raw: bytes,
    now_ms: int,
    *,
    times: dict[int, datetime] | None = None,
) -> JobRecord:
    """The ``JobRecord`` of one packed record (layout in ``lib.lua``), its state at
    ``now_ms``; an ``unreadable_record`` (failed) for bytes that are not one.

    ``times`` memoises millisecond -> datetime across the records of one reply.
    """
    fields: Any = None
    try:
        try:
            fields = msgpack.unpackb(raw, raw=False)
        except UnicodeDecodeError:  # say which value is not text
            fields = _texts(msgpack.unpackb(raw, raw=True, strict_map_key=False))
        return record_from_fields(queue, number, fields, now_ms, times=times)
    except _DECODE_ERRORS as exc:
        return _unreadable(queue, number, fields, now_ms, exc, raw=raw)


def _texts(fields: Any) -> Any:
    """A record unpacked with its strings as bytes, with those decoded as UTF-8 text."""
    if not isinstance(fields, list):
        return fields
    decoded = list(fields)
    for index, value in enumerate(fields):
        if isinstance(value, list):
            decoded[index] = _texts(value)
        elif isinstance(value, bytes):
            try:
                decoded[index] = value.decode("utf-8")
            except UnicodeDecodeError:
                name = _FIELD_NAMES[index] if index < _FIELDS else f"value {index + 1}"
                raise _Unreadable(f"its {name} is not UTF-8 text") from None
    return decoded


def _unreadable(
    queue: str,
    number: int,
    fields: Any,
    now_ms: int,
    error: Exception,
    *,
    raw: bytes = b"",
    locked: bool = False,
) -> JobRecord:
    """The record of a job whose bytes queuebox cannot read: failed from ``get`` and
    ``list_jobs``, and from a claim (``locked``) running with its lock token, for the worker
    to fail at once."""
    if isinstance(error, _Unreadable):
        what = str(error)
    elif isinstance(error, OverflowError):
        what = "a time in it is outside the range of datetime"
    else:
        detail = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        what = f"it is not msgpack ({detail})" if fields is None else detail
    values = [*fields, *[None] * _FIELDS] if isinstance(fields, list) else [None] * _FIELDS
    handler, attempts, token = values[1], values[6], values[10]
    if isinstance(token, bytes):  # a record read with its strings as bytes
        token = token.decode("utf-8", errors="replace")
    if isinstance(handler, bytes | str):
        raw = handler.encode() if isinstance(handler, str) else handler
    handler = raw.decode("utf-8", errors="replace")[:10_000]
    return unreadable_record(
        job_id(queue, number),
        queue,
        f"the stored record of job {job_id(queue, number)} cannot be read: {what} "
        "(written past queuebox, or damaged); delete the job",
        now=from_ms(now_ms),
        lock_token=(token if type(token) is str else "") if locked else None,
        raw_handler=handler,
        attempts=attempts if type(attempts) is int else 0,
    )


def _explain(fields: list[Any]) -> str:
    """What is wrong with the values of a record that did not decode."""
    kinds = {str: "text", int: "a whole number", type(None): "absent", bool: "a boolean"}
    for index, value in enumerate(fields[:_FIELDS]):
        name = _FIELD_NAMES[index]
        if index < 2:
            ok = type(value) is str
        elif index < 7:
            ok = type(value) is int
        elif index in (8, 10, 14, 16):
            ok = _absent(value) or type(value) is str
        elif index == 11:
            ok = _absent(value) or type(value) in (str, list)
        else:
            ok = _absent(value) or type(value) is int
        if not ok:
            kind = kinds.get(type(value), type(value).__name__)
            return f"its {name} is {kind} ({value!r:.60})"
    return "its values are not those of a queuebox record"


def _absent(value: object) -> bool:
    """Scripts write false for an absent value; records of earlier versions hold nil."""
    return value is None or value is False


def _optional_time(value: object) -> bool:
    return value is None or value is False or type(value) is int


def record_from_fields(
    queue: str,
    number: int,
    fields: Any,
    now_ms: int,
    *,
    with_token: bool = False,
    times: dict[int, datetime] | None = None,
) -> JobRecord:
    """The ``JobRecord`` of one unpacked record (a list, extended here in place). Raises
    ``ValueError`` saying what is wrong for values that are not a record's.

    A worker reads every job it runs through here (a hundred per claim), so the checks are
    written out once, up front, and the times of a batch share one cache (``times``)."""
    if type(fields) is not list or not 7 <= len(fields) <= _FIELDS:
        size = f"{len(fields)} values" if isinstance(fields, list) else type(fields).__name__
        raise _Unreadable(f"it is {size}, not a list of 7 to {_FIELDS} values")
    if len(fields) < _FIELDS:
        fields += [None] * (_FIELDS - len(fields))
    (name, handler, priority, created, run_delta, updated_delta, attempts) = fields[:7]
    (locked_at, locked_by, lock_expires, token, last_error, failed_at, done_at) = fields[7:14]
    unique, cancelled_at, limit_key = fields[14], fields[15], fields[16]
    # Scripts write false for an absent value; records of earlier versions hold nil.
    if not (
        type(name) is str
        and type(handler) is str
        and type(priority) is int
        and type(created) is int
        and type(run_delta) is int
        and type(updated_delta) is int
        and type(attempts) is int
        and (locked_by is None or locked_by is False or type(locked_by) is str)
        and (token is None or token is False or type(token) is str)
        and (unique is None or unique is False or type(unique) is str)
        and (limit_key is None or limit_key is False or type(limit_key) is str)
        and _optional_time(locked_at)
        and _optional_time(lock_expires)
        and _optional_time(failed_at)
        and _optional_time(done_at)
        and _optional_time(cancelled_at)
        and (
            last_error is None
            or last_error is False
            or type(last_error) is str
            or type(last_error) is list
        )
    ):
        raise _Unreadable(_explain(fields))
    run_at = created + run_delta
    if done_at is not None and done_at is not False:
        state = JobState.COMPLETED
    elif failed_at is not None and failed_at is not False:
        state = JobState.FAILED
    elif (cancelled_at is not None and cancelled_at is not False) and (
        locked_at is None
        or locked_at is False
        or (type(lock_expires) is int and lock_expires <= now_ms)
    ):
        state = JobState.CANCELLED  # a waiting job cancelled, or one whose worker died since
    elif locked_at is not None and locked_at is not False:
        state = JobState.RUNNING
    else:
        state = JobState.READY if run_at <= now_ms else JobState.SCHEDULED
    if times is None:
        times = {}
    if type(last_error) is list:  # a reclaim: [previous owner, expired lock's expiry]
        owner, expired = [*last_error, None, None][:2]
        owner = owner if type(owner) is str else "of unknown name"
        if not _optional_time(expired):
            raise _Unreadable(_explain(fields))
        last_error = reclaim_note(owner, _when(expired, times))
    return job_record(
        id=f"{queue}/{number}",
        name=name,
        handler=handler,
        queue=queue,
        priority=priority,
        run_at=_moment(run_at, times),
        attempts=attempts,
        state=state,
        created_at=_moment(created, times),
        updated_at=_moment(created + updated_delta, times),
        locked_at=_when(locked_at, times),
        locked_by=None if locked_by is None or locked_by is False else locked_by,
        lock_expires_at=_when(lock_expires, times),
        lock_token=token if with_token and token is not None and token is not False else None,
        last_error=None if last_error is None or last_error is False else last_error,
        failed_at=_when(failed_at, times),
        completed_at=_when(done_at, times),
        unique_key=None if unique is None or unique is False else unique,
        cancelled_at=_when(cancelled_at, times),
        limit_key=None if limit_key is None or limit_key is False else limit_key,
    )


def _moment(value: int, times: dict[int, datetime]) -> datetime:
    """The datetime of ``value`` milliseconds, from the batch's cache when it is there (the
    jobs of one enqueue share their times)."""
    moment = times.get(value)
    if moment is None:
        moment = times[value] = EPOCH + timedelta(milliseconds=value)
    return moment


def _when(value: object, times: dict[int, datetime]) -> datetime | None:
    """An optional time (already checked to be absent or an int)."""
    if value is None or value is False:
        return None
    return _moment(value, times)  # type: ignore[arg-type]
