"""Key names, job ids, URLs and record decoding of the Redis store (see ``docs/redis.md``).

Every key of one queue carries the queue's name as its hash tag, ``<prefix>:{<queue>}:...``,
so that on Redis Cluster all of a queue lives in one slot and one script may touch it all.
A job id is ``<queue>/<number>``: the number comes from the queue's own counter, and the queue
part tells ``get`` and ``delete`` which slot to ask without a scan. Names built here never go
into a ``KEYS`` or ``SCAN`` pattern.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

import msgpack

from queuebox.backends.base import JobRecord, JobState, NewJob, reclaim_note
from queuebox.errors import ConfigurationError, redact_url
from queuebox.validation import check_queue_name, is_queue_name

__all__ = [
    "DEFAULT_PREFIX",
    "ClaimedBatch",
    "QueueKeys",
    "ack_results",
    "check_prefix",
    "check_queue",
    "claim_order",
    "decode_claimed",
    "decode_record",
    "enqueue_values",
    "from_ms",
    "job_id",
    "new_record",
    "pack_jobs",
    "parse_job_id",
    "record_from_fields",
    "split_url",
    "to_ms",
    "wake_list",
]

DEFAULT_PREFIX = "queuebox"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PREFIX = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_NUMBER = re.compile(r"[1-9][0-9]{0,17}")
_FIELDS = 15
_APPLIED = ord("1")
_VALID_QUEUES: set[str] = set()  # queue names already checked by parse_job_id
_CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_ADAPTER_OPTIONS = ("prefix", "registry_ttl")
_CLIENT_DEFAULTS = {"socket_connect_timeout": "5", "socket_timeout": "30"}


class QueueKeys(NamedTuple):
    """The nine keys every script of one queue receives, in this order (see ``lib.lua``)."""

    meta: str
    jobs: str
    sidx: str
    ridx: str
    running: str
    failed: str
    done: str
    unique: str  # unique key -> number of the waiting or running job holding it
    ticks: str  # recurring job key -> last tick recorded (ms)

    @classmethod
    def of(cls, prefix: str, queue: str) -> QueueKeys:
        base = f"{prefix}:{{{check_queue(queue)}}}:"
        return cls(*(base + name for name in cls._fields))


def registry_key(prefix: str) -> str:
    """The set of every queue name that ever held a job under ``prefix``."""
    return f"{prefix}:queues"


def wake_channel(prefix: str) -> str:
    """The pub/sub channel scripts publish a queue's name on when it may have work."""
    return f"{prefix}:wake"


def split_url(url: str) -> tuple[str, bool, dict[str, Any]]:
    """``(redis-py URL, is a cluster URL, the adapter's own settings)`` of a store URL:
    ``?prefix=`` and ``?registry_ttl=`` are the adapter's, every other parameter redis-py's."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {key: value for key, value in query if key in _ADAPTER_OPTIONS}
    theirs = dict(_CLIENT_DEFAULTS)
    theirs.update({key: value for key, value in query if key not in _ADAPTER_OPTIONS})
    if scheme == "unix":
        theirs.pop("socket_connect_timeout", None)
    base = _CLUSTER_SCHEMES.get(scheme, scheme)
    client_url = f"{base}://{parts.netloc}{parts.path}?{urlencode(theirs)}"
    settings: dict[str, Any] = {"prefix": ours.get("prefix", DEFAULT_PREFIX)}
    if "registry_ttl" in ours:
        try:
            settings["registry_ttl"] = float(ours["registry_ttl"])
        except ValueError:
            raise ConfigurationError(
                f"registry_ttl must be a number of seconds in {redact_url(url)}"
            ) from None
    return client_url, scheme in _CLUSTER_SCHEMES, settings


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ConfigurationError(
            f"invalid Redis key prefix {prefix!r}: use 1 to 64 letters, digits, or _ . - :"
        )
    return prefix


def check_queue(queue: str) -> str:
    """A queue name safe inside a key's hash tag (the core's rule: no braces, no patterns)."""
    return check_queue_name(queue)


def job_id(queue: str, number: int) -> str:
    return f"{queue}/{number}"


def parse_job_id(value: object) -> tuple[str, int] | None:
    """``(queue, number)`` of a well-formed id, else ``None`` (never raises)."""
    if not isinstance(value, str):
        return None
    queue, slash, number = value.rpartition("/")
    if not slash or not _NUMBER.fullmatch(number):
        return None
    if queue not in _VALID_QUEUES:
        if not is_queue_name(queue):
            return None
        if len(_VALID_QUEUES) < 10_000:
            _VALID_QUEUES.add(queue)
    return queue, int(number)


def ack_results(results: list[bool], batches: Sequence[list[int]], replies: Sequence[Any]) -> None:
    """Fill ``results`` from ``complete_many.lua`` replies: one ``1`` or ``0`` per job, for
    the positions in ``batches``."""
    for positions, reply in zip(batches, replies, strict=True):
        flags = reply if isinstance(reply, bytes) else str(reply).encode()
        for position, flag in zip(positions, flags, strict=True):
            results[position] = flag == _APPLIED


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


def wake_list(prefix: str, queue: str) -> str:
    """The queue's wake list (see ``lib.lua``): idle workers of this queue alone BLPOP it."""
    return f"{prefix}:{{{check_queue(queue)}}}:wake"


def to_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch (rounded down) of an aware datetime."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(milliseconds=1)


def from_ms(value: int) -> datetime:
    return EPOCH + timedelta(milliseconds=value)


def enqueue_values(job: NewJob) -> list[bytes | str | int]:
    """The three values ``tick.lua`` takes for its run: the record's first three fields (name,
    handler, priority) packed here with msgpack's C extension, so that the script only adds
    what it must compute (the job number, times from ``TIME``); the delay in ms or ``@`` and
    the run_at in ms; the unique key (``=`` and the key, or ``''``)."""
    name, handler, priority, when, unique = _job_values(job)
    head: bytes = msgpack.packb((name, handler, priority))[1:]  # no array header
    return [head, when, unique]


def pack_jobs(jobs: Sequence[NewJob]) -> bytes:
    """``enqueue.lua``'s jobs argument: one msgpack array of the five values of every job."""
    packed: bytes = msgpack.packb([value for job in jobs for value in _job_values(job)])
    return packed


def _job_values(job: NewJob) -> tuple[str, str, int, str | int, str]:
    when: str | int = round(job.delay * 1000) if job.run_at is None else f"@{to_ms(job.run_at)}"
    unique = "" if job.unique_key is None else "=" + job.unique_key
    return job.name, job.handler, job.priority, when, unique


def new_record(
    job: NewJob,
    number: int,
    run_at: int,
    now_ms: int,
    held: bytes | str,
    *,
    times: dict[int, datetime] | None = None,
) -> JobRecord:
    """The record of ``job`` as the script just stored it, or the decoded record of the job
    that holds its unique key (``held``: its packed record, empty when ``job`` was stored).
    ``times`` memoises millisecond -> datetime across the jobs of one reply."""
    if held:
        raw = held.encode() if isinstance(held, str) else held
        return decode_record(job.queue, number, raw, now_ms, times=times)
    if times is None:
        times = {}
    now = times.get(now_ms)
    if now is None:
        now = times[now_ms] = from_ms(now_ms)
    at = now if run_at == now_ms else times.get(run_at)
    if at is None:
        at = times[run_at] = from_ms(run_at)
    return JobRecord(
        id=f"{job.queue}/{number}",
        name=job.name,
        handler=job.handler,
        queue=job.queue,
        priority=job.priority,
        run_at=at,
        attempts=0,
        state=JobState.READY if run_at <= now_ms else JobState.SCHEDULED,
        created_at=now,
        updated_at=now,
        unique_key=job.unique_key,
    )


def _when(value: object) -> datetime | None:
    return from_ms(value) if isinstance(value, int) and not isinstance(value, bool) else None


def decode_record(
    queue: str,
    number: int,
    raw: bytes,
    now_ms: int,
    *,
    with_token: bool = False,
    times: dict[int, datetime] | None = None,
) -> JobRecord:
    """The ``JobRecord`` of one packed record (layout in ``lib.lua``), its state at ``now_ms``.

    ``times`` memoises millisecond -> datetime across the records of one reply: the jobs of
    one claim share their locked_at, updated_at and lock expiry.
    """
    try:
        fields = msgpack.unpackb(raw, raw=False)
        return record_from_fields(queue, number, fields, now_ms, with_token=with_token, times=times)
    except (ValueError, TypeError, IndexError) as exc:  # msgpack's errors are ValueErrors
        return unreadable_record(queue, number, raw, now_ms, exc)


def unreadable_record(
    queue: str, number: int, raw: bytes, now_ms: int, error: Exception
) -> JobRecord:
    """What ``get`` / ``list_jobs`` show for bytes that are not a record (written past
    queuebox): a failed job that says why, so it can be seen and deleted. ``claim.lua``
    puts such a job in the failed set and never runs it."""
    now = from_ms(now_ms)
    return JobRecord(
        id=job_id(queue, number),
        name="<unreadable>",
        handler=raw.decode("utf-8", errors="replace"),
        queue=queue,
        priority=100,
        run_at=now,
        attempts=0,
        state=JobState.FAILED,
        created_at=now,
        updated_at=now,
        last_error=(
            f"PayloadError: the stored record is not a queuebox record "
            f"({type(error).__name__}: {error}); delete the job"
        ),
        failed_at=now,
    )


def decode_claimed(queue: str, blob: bytes, now_ms: int) -> list[JobRecord]:
    """The records of one ``claim.lua`` reply, in claim order."""
    return ClaimedBatch.unpack(queue, blob, now_ms).records()


class ClaimedBatch:
    """One ``claim.lua`` reply (a msgpack array of job number, record, job number, record...),
    unpacked in one C call but not yet turned into ``JobRecord`` objects.

    A worker that claims ahead reads a reply, sends its next round trip, then builds
    ``records()`` (the costly part) while the store works on that round trip.
    """

    __slots__ = ("_now_ms", "_queue", "_values")

    def __init__(self, queue: str, values: list[Any], now_ms: int) -> None:
        self._queue, self._values, self._now_ms = queue, values, now_ms

    @classmethod
    def unpack(cls, queue: str, blob: bytes, now_ms: int) -> ClaimedBatch:
        return cls(queue, msgpack.unpackb(blob, raw=False), now_ms)

    def __len__(self) -> int:
        return len(self._values) // 2

    def records(self) -> list[JobRecord]:
        values, times = self._values, dict[int, datetime]()
        return claim_order(
            [
                record_from_fields(
                    self._queue, number, fields, self._now_ms, with_token=True, times=times
                )
                for number, fields in zip(values[::2], values[1::2], strict=True)
            ]
        )


def record_from_fields(
    queue: str,
    number: int,
    fields: list[Any],
    now_ms: int,
    *,
    with_token: bool = False,
    times: dict[int, datetime] | None = None,
) -> JobRecord:
    """The ``JobRecord`` of one unpacked record (a list, extended here in place)."""
    if len(fields) < _FIELDS:
        fields += [None] * (_FIELDS - len(fields))
    (name, handler, priority, created, run_delta, updated_delta, attempts) = fields[:7]
    (locked_at, locked_by, lock_expires, token, last_error, failed_at, done_at) = fields[7:14]
    run_at = created + run_delta
    if done_at is not None:
        state = JobState.COMPLETED
    elif failed_at is not None:
        state = JobState.FAILED
    elif locked_at is not None:
        state = JobState.RUNNING
    else:
        state = JobState.READY if run_at <= now_ms else JobState.SCHEDULED
    if isinstance(last_error, list):  # a reclaim: [previous owner, expired lock's expiry]
        owner, expired = [*last_error, None, None][:2]
        last_error = reclaim_note(str(owner), _when(expired))
    if times is None:
        times = {}

    def when(value: object) -> datetime | None:
        if type(value) is not int:
            return None
        moment = times.get(value)
        if moment is None:
            moment = times[value] = EPOCH + timedelta(milliseconds=value)
        return moment

    unique = fields[14]
    return JobRecord(
        id=f"{queue}/{number}",
        name=name,
        handler=handler,
        queue=queue,
        priority=priority,
        run_at=when(run_at),  # type: ignore[arg-type]
        attempts=attempts,
        state=state,
        created_at=when(created),  # type: ignore[arg-type]
        updated_at=when(created + updated_delta),  # type: ignore[arg-type]
        locked_at=when(locked_at),
        locked_by=locked_by if type(locked_by) is str else None,
        lock_expires_at=when(lock_expires),
        lock_token=token if with_token and type(token) is str else None,
        last_error=last_error if type(last_error) is str else None,
        failed_at=when(failed_at),
        completed_at=when(done_at),
        unique_key=unique if type(unique) is str else None,
    )
