"""Key names, job ids and record decoding of the Redis store (see ``docs/redis.md``).

Every key of one queue carries the queue's name as its hash tag, ``<prefix>:{<queue>}:...``,
so that on Redis Cluster all of a queue lives in one slot and one script may touch it all.
A job id is ``<queue>/<number>``: the number comes from the queue's own counter, and the queue
part tells ``get`` and ``delete`` which slot to ask without a scan. Names built here never go
into a ``KEYS`` or ``SCAN`` pattern.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import msgpack

from queuebox.backends.base import JobRecord, JobState, reclaim_note
from queuebox.errors import ConfigurationError, InvalidQueueName

__all__ = [
    "DEFAULT_PREFIX",
    "QueueKeys",
    "check_prefix",
    "check_queue",
    "decode_record",
    "from_ms",
    "job_id",
    "parse_job_id",
    "to_ms",
]

DEFAULT_PREFIX = "queuebox"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_QUEUE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_PREFIX = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_NUMBER = re.compile(r"[1-9][0-9]{0,17}")
_FIELDS = 14


class QueueKeys(NamedTuple):
    """The seven keys every script of one queue receives, in this order (see ``lib.lua``)."""

    meta: str
    jobs: str
    sidx: str
    ridx: str
    running: str
    failed: str
    done: str

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


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise ConfigurationError(
            f"invalid Redis key prefix {prefix!r}: use 1 to 64 letters, digits, or _ . - :"
        )
    return prefix


def check_queue(queue: str) -> str:
    if not isinstance(queue, str) or not _QUEUE.fullmatch(queue):
        raise InvalidQueueName(
            f"invalid queue name {queue!r}: use 1 to 64 letters, digits, or _ . -"
        )
    return queue


def is_queue_name(queue: object) -> bool:
    return isinstance(queue, str) and _QUEUE.fullmatch(queue) is not None


def job_id(queue: str, number: int) -> str:
    return f"{queue}/{number}"


def parse_job_id(value: object) -> tuple[str, int] | None:
    """``(queue, number)`` of a well-formed id, else ``None`` (never raises)."""
    if not isinstance(value, str):
        return None
    queue, slash, number = value.rpartition("/")
    if not slash or not _QUEUE.fullmatch(queue) or not _NUMBER.fullmatch(number):
        return None
    return queue, int(number)


def to_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch (rounded down) of an aware datetime."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(milliseconds=1)


def from_ms(value: int) -> datetime:
    return EPOCH + timedelta(milliseconds=value)


def _when(value: object) -> datetime | None:
    return from_ms(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def decode_record(
    queue: str, number: int, raw: bytes, now_ms: int, *, with_token: bool = False
) -> JobRecord:
    """The ``JobRecord`` of one packed record (layout in ``lib.lua``), its state at ``now_ms``."""
    fields = list(msgpack.unpackb(raw, raw=False))
    fields += [None] * (_FIELDS - len(fields))
    (name, handler, priority, created, run_delta, updated_delta, attempts) = fields[:7]
    (locked_at, locked_by, lock_expires, token, last_error, failed_at, done_at) = fields[7:]
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
    return JobRecord(
        id=job_id(queue, number),
        name=name,
        handler=handler,
        queue=queue,
        priority=priority,
        run_at=from_ms(run_at),
        attempts=attempts,
        state=state,
        created_at=from_ms(created),
        updated_at=from_ms(created + updated_delta),
        locked_at=_when(locked_at),
        locked_by=_text(locked_by),
        lock_expires_at=_when(lock_expires),
        lock_token=_text(token) if with_token else None,
        last_error=_text(last_error),
        failed_at=_when(failed_at),
        completed_at=_when(done_at),
    )
