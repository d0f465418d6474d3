"""Key names, job ids, URLs and record decoding of the Redis store (see ``docs/redis.md``).

Every key of one queue carries the queue's name as its hash tag, ``<prefix>:{<queue>}:...``,
so that on Redis Cluster all of a queue lives in one slot and one script may touch it all.
A job id is ``<queue>/<number>``: the number comes from the queue's own counter, and the queue
part tells ``get`` and ``delete`` which slot to ask without a scan. Names built here never go
into a ``KEYS`` or ``SCAN`` pattern.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit

import msgpack

from queuebox.backends.base import JobRecord, JobState, NewJob, reclaim_note
from queuebox.errors import ConfigurationError, InvalidQueueName, redact_url

__all__ = [
    "DEFAULT_PREFIX",
    "QueueKeys",
    "check_prefix",
    "check_queue",
    "decode_record",
    "enqueue_values",
    "from_ms",
    "job_id",
    "new_record",
    "parse_job_id",
    "split_url",
    "to_ms",
]

DEFAULT_PREFIX = "queuebox"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_QUEUE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_PREFIX = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_NUMBER = re.compile(r"[1-9][0-9]{0,17}")
_FIELDS = 15
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


def enqueue_values(job: NewJob) -> list[str | int]:
    """The six values ``enqueue.lua`` and ``tick.lua`` take per job."""
    run_at = "" if job.run_at is None else to_ms(job.run_at)
    unique = "" if job.unique_key is None else "=" + job.unique_key
    return [job.name, job.handler, job.priority, run_at, round(job.delay * 1000), unique]


def new_record(job: NewJob, number: int, run_at: int, now_ms: int, held: bytes | str) -> JobRecord:
    """The record of ``job`` as the script just stored it, or the decoded record of the job
    that holds its unique key (``held``: its packed record, empty when ``job`` was stored)."""
    if held:
        raw = held.encode() if isinstance(held, str) else held
        return decode_record(job.queue, number, raw, now_ms)
    return JobRecord(
        id=job_id(job.queue, number),
        name=job.name,
        handler=job.handler,
        queue=job.queue,
        priority=job.priority,
        run_at=from_ms(run_at),
        attempts=0,
        state=JobState.READY if run_at <= now_ms else JobState.SCHEDULED,
        created_at=from_ms(now_ms),
        updated_at=from_ms(now_ms),
        unique_key=job.unique_key,
    )


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
        unique_key=_text(fields[14]),
    )
