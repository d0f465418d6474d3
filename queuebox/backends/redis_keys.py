"""Key names and job ids of the Redis store (see ``docs/redis.md``).

Every key of one queue carries the queue's name as its hash tag, ``<prefix>:{<queue>}:...``,
so that on Redis Cluster all of a queue lives in one slot and one script may touch it all.
A job id is ``<queue>/<number>``: the number comes from the queue's own counter, and the queue
part tells ``get`` and ``delete`` which slot to ask without a scan. Names built here never go
into a ``KEYS`` or ``SCAN`` pattern.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from queuebox.errors import ConfigurationError
from queuebox.validation import check_queue_name, is_queue_name

__all__ = [
    "DEFAULT_PREFIX",
    "KeyCache",
    "QueueKeys",
    "check_prefix",
    "check_queue",
    "history_key",
    "job_id",
    "minute_key",
    "parse_job_id",
    "paused_key",
    "registry_key",
    "stats_queues_key",
    "wake_channel",
    "wake_list",
    "workers_key",
]

DEFAULT_PREFIX = "queuebox"
_PREFIX = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_NUMBER = re.compile(r"[1-9][0-9]{0,17}")
_VALID_QUEUES: set[str] = set()  # queue names already checked by parse_job_id
_CACHE_MAX = 10_000  # queues whose names are kept checked or built


class QueueKeys(NamedTuple):
    """The eleven keys every script of one queue receives, in this order (see ``lib.lua``)."""

    meta: str
    jobs: str
    sidx: str
    ridx: str
    running: str
    failed: str
    done: str
    unique: str  # unique key -> number of the waiting or running job holding it
    ticks: str  # recurring job key -> last tick recorded (ms)
    cancelled: str  # job number -> cancelled_at (ms): cancelled for good
    cancelling: str  # numbers of running jobs whose cancel was asked

    @classmethod
    def of(cls, prefix: str, queue: str) -> QueueKeys:
        base = f"{prefix}:{{{check_queue(queue)}}}:"
        return cls(*(base + name for name in cls._fields))


class KeyCache:
    """``QueueKeys`` of one prefix, built once per queue (up to ``_CACHE_MAX`` queues)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = check_prefix(prefix)
        self._built: dict[str, QueueKeys] = {}

    def __call__(self, queue: str) -> QueueKeys:
        keys = self._built.get(queue)
        if keys is None:
            keys = QueueKeys.of(self.prefix, queue)
            if len(self._built) < _CACHE_MAX:
                self._built[queue] = keys
        return keys


def registry_key(prefix: str) -> str:
    """The set of every queue name that ever held a job under ``prefix``."""
    return f"{prefix}:queues"


def paused_key(prefix: str) -> str:
    """The set of paused queues' names (each queue's flag is in its own ``meta`` hash)."""
    return f"{prefix}:paused"


def workers_key(prefix: str) -> str:
    """The hash of the worker registry: worker id -> its last beat (see ``worker_beat.lua``)."""
    return f"{prefix}:workers"


def stats_queues_key(prefix: str) -> str:
    """The set of queues that have throughput history (their minutes are kept beside them)."""
    return f"{prefix}:stats:queues"


def history_key(prefix: str, queue: str) -> str:
    """The queue's index of minutes with throughput history (``stats_add.lua``)."""
    return f"{prefix}:{{{check_queue(queue)}}}:minutes"


def minute_key(prefix: str, queue: str, minute_ms: int) -> str:
    """The queue's counters of one minute (``stats_add.lua``)."""
    return f"{prefix}:{{{check_queue(queue)}}}:m:{int(minute_ms)}"


def wake_channel(prefix: str, database: int) -> str:
    """The pub/sub channel scripts publish a queue's name on when it may have work. Channels
    are global to a server, not per database, so the database number is part of the name:
    workers of ``redis://host/0`` and ``redis://host/1`` do not wake each other."""
    return f"{prefix}:{database}:wake"


def wake_list(prefix: str, queue: str) -> str:
    """The queue's wake list (see ``lib.lua``): idle workers of this queue alone BLPOP it."""
    return f"{prefix}:{{{check_queue(queue)}}}:wake"


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
        if len(_VALID_QUEUES) < _CACHE_MAX:
            _VALID_QUEUES.add(queue)
    return queue, int(number)
