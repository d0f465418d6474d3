"""The Redis store's script calls: what the client sends each script, checked before anything
is sent, and how it reads what the enqueue, tick and acknowledgement scripts answer (the
records themselves are ``redis_codec``'s). No I/O, so the sync and asyncio paths build their
calls and read their replies with the same code.
"""

from __future__ import annotations

import contextlib
import math
import re
import secrets
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgpack
from redis.exceptions import ResponseError

from queuebox.backends.records import (
    EARLIEST_RUN_AT,
    LATEST_RUN_AT,
    CancelOutcome,
    JobRecord,
    NewJob,
    QueueCounts,
    batch_bounds,
)
from queuebox.backends.redis_codec import decode_record, from_ms, new_record, to_ms
from queuebox.backends.redis_keys import QueueKeys, parse_job_id
from queuebox.errors import InvalidSchedule, ValidationError

if TYPE_CHECKING:
    from queuebox.backends.redis_scripts import Call

__all__ = [
    "LATEST_MS",
    "EnqueueBatch",
    "ack_results",
    "cancel_outcome",
    "claim_call",
    "claim_plan",
    "delay_ms",
    "enqueue_batches",
    "enqueue_one",
    "jobs_by_queue",
    "latest_ticks",
    "lease_ms",
    "lock_calls",
    "moment_ms",
    "pack_jobs",
    "queue_counts",
    "refused_schedule",
    "requested",
    "scheduled_one",
    "scheduled_records",
]

_APPLIED = ord("1")
_LOCKS_BATCH = 1000  # jobs per complete_many / extend_many call: bounds how long it blocks
#: Lock tokens are minted by claim.lua from a random hex secret and the job number; a token
#: with any other text cannot match, and the scripts could not parse it.
_TOKEN = re.compile(r"[A-Za-z0-9_\-]{1,200}")
_ENQUEUE_BATCH = 500  # jobs per enqueue script call: bounds how long one call blocks Redis

#: A batch of one queue's jobs sent in one enqueue call: its queue, the jobs' positions and
#: their ``when`` (delay in ms, or ``@`` and the run_at in ms).
EnqueueBatch = tuple[str, list[int], list[str | int]]

_EARLIEST_MS = to_ms(EARLIEST_RUN_AT)
#: The latest time a record holds: ``LATEST_RUN_AT`` (``RUN_AT_LATEST`` in ``lib.lua``).
LATEST_MS = to_ms(LATEST_RUN_AT)
_SPAN = (LATEST_RUN_AT - EARLIEST_RUN_AT).total_seconds()
_LEASE_MAX = 100 * 365 * 86_400.0  # seconds: a lease far beyond any job's run, still a time


def moment_ms(moment: object, what: str) -> int:
    """``to_ms`` of a run time or tick, which must lie between ``EARLIEST_RUN_AT`` and
    ``LATEST_RUN_AT`` (what every store can hold), else ``InvalidSchedule``."""
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise InvalidSchedule(f"{what}={moment!r} is not valid: give a timezone-aware datetime")
    ms = to_ms(moment)
    if not _EARLIEST_MS <= ms <= LATEST_MS:
        raise InvalidSchedule(
            f"{what}={moment.isoformat()} is outside the times a store can hold: give one "
            f"from {EARLIEST_RUN_AT.isoformat()} to {LATEST_RUN_AT.isoformat()} (UTC); "
            "nothing was stored"
        )
    return ms


def delay_ms(delay: object, what: str = "delay", *, clamp: bool = False) -> int:
    """Whole milliseconds of a delay in seconds: finite, not negative, and short enough that
    now + delay can be a run time, else ``InvalidSchedule``. With ``clamp`` (a retry's backoff,
    decided by the core), any number is brought into that range instead; only a value that
    is not a number is refused."""
    seconds = _seconds(delay)
    if seconds is not None and clamp:
        seconds = min(max(seconds, 0.0), _SPAN)
    if seconds is None or not 0 <= seconds <= _SPAN:
        raise InvalidSchedule(
            f"{what}={delay!r} is not valid: give a finite number of seconds from 0 to "
            f"{_SPAN:.0f} (a run time no later than {LATEST_RUN_AT.isoformat()}); "
            "nothing was stored"
        )
    return round(seconds * 1000)


def _seconds(value: object) -> float | None:
    """``value`` as a float (an int too large for one as infinity); ``None`` for NaN and
    what is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf if value > 0 else -math.inf
    return None if math.isnan(seconds) else seconds


def lease_ms(lease: object) -> int:
    """Whole milliseconds (at least 1) of a lock's lease in seconds."""
    seconds = _seconds(lease)
    if seconds is None or not 0 <= seconds < math.inf:
        raise ValidationError(f"lease={lease!r} is not valid: give a finite number of seconds")
    return max(1, round(min(seconds, _LEASE_MAX) * 1000))


# -- what the client sends ----------------------------------------------------------------------


def _job_values(job: NewJob) -> tuple[str, str, int, str | int, str | bool, list[Any] | bool]:
    """The six values of one job; raises ``InvalidSchedule`` for a run time no store can
    hold, and ``ValidationError`` for flow-control limits it cannot keep, before anything is
    sent."""
    when = delay_ms(job.delay) if job.run_at is None else f"@{moment_ms(job.run_at, 'run_at')}"
    unique: str | bool = False if job.unique_key is None else job.unique_key
    limits = False if job.limit_key is None else _limits(job)
    return job.name, job.handler, job.priority, when, unique, limits


def _run_at(now_ms: int, when: str | int) -> int:
    """The run_at (ms) the script gave a job from its ``when`` (a delay, or ``@`` a time)."""
    return now_ms + when if type(when) is int else int(str(when)[1:])


_LIMIT_KEY_MAX = 1000  # characters: a key name Redis holds comfortably, many times over


def _limits(job: NewJob) -> list[Any] | bool:
    """``[limit key, max_concurrency, rate count, rate window in ms]`` (absent values false),
    or false for a job without a limit key."""
    key, most, rate = job.limit_key, job.max_concurrency, job.rate_limit
    if key is None:
        return False
    if not isinstance(key, str) or not 1 <= len(key) <= _LIMIT_KEY_MAX:
        raise ValidationError(
            f"limit_key={key!r} is not valid: give a string of 1 to {_LIMIT_KEY_MAX} "
            "characters; nothing was stored"
        )
    if most is not None and (type(most) is not int or not 1 <= most <= 2**31):
        raise ValidationError(
            f"max_concurrency={most!r} is not valid: give a whole number >= 1; nothing was stored"
        )
    window = None
    if rate is not None:
        window = _seconds(getattr(rate, "per", None))
        count = getattr(rate, "count", None)
        if type(count) is not int or count < 1 or window is None or not 0 < window <= _SPAN:
            raise ValidationError(
                f"rate_limit={rate!r} is not valid: give a RateLimit of at least 1 start "
                "per a positive number of seconds; nothing was stored"
            )
    return [
        key,
        False if most is None else most,
        False if rate is None else rate.count,
        False if window is None else max(1, round(window * 1000)),
    ]


def pack_jobs(jobs: Sequence[NewJob]) -> bytes:
    """``enqueue.lua``'s jobs argument: one msgpack array of the six values of every job
    (name, handler, priority, delay in ms or ``@`` and the run_at in ms, unique key or
    false, flow-control limits or false); one job packed alone is ``tick.lua``'s."""
    return _packed(jobs)[0]


def _packed(jobs: Sequence[NewJob]) -> tuple[bytes, list[str | int]]:
    """``pack_jobs(jobs)``, and each job's ``when`` (kept for its record: not computed twice)."""
    values: list[Any] = []
    whens: list[str | int] = []
    for job in jobs:
        six = _job_values(job)
        values += six
        whens.append(six[3])
    packed: bytes = msgpack.packb(values)
    return packed, whens


def enqueue_one(job: NewJob) -> tuple[bytes, str | int]:
    """``pack_jobs([job])`` and the job's ``when``: the one-job enqueue's arguments."""
    six = _job_values(job)
    packed: bytes = msgpack.packb(six)
    return packed, six[3]


def scheduled_one(job: NewJob, reply: Sequence[Any], when: str | int) -> JobRecord:
    """The record of ``job`` from the reply of its one-job enqueue call (``enqueue_one``):
    as the script stored it, or the record of the job holding its unique key."""
    now_ms = int(reply[0])
    if len(reply) > 3:  # not stored: {position 1, the holder's number, its record}
        return decode_record(job.queue, int(reply[4]), reply[5], now_ms)
    return new_record(job, int(reply[2]), _run_at(now_ms, when), now_ms)


def enqueue_batches(
    jobs: Sequence[NewJob], keys: Any, channel: str
) -> tuple[list[Call], list[EnqueueBatch]]:
    """The enqueue script calls that store ``jobs``: one per queue per ``_ENQUEUE_BATCH``
    jobs (fewer when their payloads pass ``records.BATCH_TEXT``), and for each the queue,
    the positions of its jobs and their ``when``. ``keys`` builds a queue's ``QueueKeys``
    (and checks its name)."""
    by_queue: dict[str, list[int]] = {}
    for index, job in enumerate(jobs):
        by_queue.setdefault(job.queue, []).append(index)
    calls: list[Call] = []
    batches: list[EnqueueBatch] = []
    for queue, indexes in by_queue.items():
        queue_keys: QueueKeys = keys(queue)
        queue_jobs = [jobs[index] for index in indexes]
        for start, stop in batch_bounds(queue_jobs, _ENQUEUE_BATCH):
            batch = indexes[start:stop]
            packed, whens = _packed(queue_jobs[start:stop])
            calls.append(("enqueue", queue_keys, [channel, queue, packed]))
            batches.append((queue, batch, whens))
    return calls, batches


def claim_call(keys: QueueKeys, worker_id: str, limit: int, lease: float) -> Call:
    """The ``claim.lua`` call that locks up to ``limit`` jobs of one queue for ``worker_id``
    until ``lease`` seconds from now, with a fresh 128-bit secret for the lock tokens."""
    return ("claim", keys, [worker_id, limit, lease_ms(lease), secrets.token_hex(16)])


# -- what the scripts return --------------------------------------------------------------------


def scheduled_records(
    jobs: Sequence[NewJob], batches: Sequence[EnqueueBatch], replies: Sequence[Any]
) -> list[JobRecord]:
    """The records of ``jobs`` from the replies of their ``enqueue_batches`` calls: each job
    as the script stored it, or the record of the job holding its unique key."""
    records: list[JobRecord | None] = [None] * len(jobs)
    for (queue, batch, whens), reply in zip(batches, replies, strict=True):
        now_ms, number = int(reply[0]), int(reply[2])
        held = {
            int(reply[i]) - 1: (int(reply[i + 1]), reply[i + 2]) for i in range(3, len(reply), 3)
        }
        times: dict[int, datetime] = {}
        for position, index in enumerate(batch):
            job = jobs[index]
            if position in held:  # not stored: its unique key's holder instead
                holder, raw = held[position]
                records[index] = decode_record(queue, holder, raw, now_ms, times=times)
                continue
            run_at = _run_at(now_ms, whens[position])
            records[index] = new_record(job, number, run_at, now_ms, times=times)
            number += 1
    return [record for record in records if record is not None]


def ack_results(results: list[bool], batches: Sequence[list[int]], replies: Sequence[Any]) -> None:
    """Fill ``results`` from ``complete_many.lua`` or ``extend_many.lua`` replies: one ``1``
    or ``0`` per job, for the positions in ``batches``."""
    for positions, reply in zip(batches, replies, strict=True):
        flags = reply if isinstance(reply, bytes) else str(reply).encode()
        for position, flag in zip(positions, flags, strict=True):
            results[position] = flag == _APPLIED


@contextlib.contextmanager
def refused_schedule() -> Iterator[None]:
    """Raise ``InvalidSchedule`` for the error an enqueue or tick script returns, having
    written nothing, for a job that would run after ``LATEST_RUN_AT``."""
    try:
        yield
    except ResponseError as exc:
        if "queuebox: run_at out of range" not in str(exc):
            raise
        raise InvalidSchedule(
            f"a job's delay would make it run after {LATEST_RUN_AT.isoformat()}, the latest "
            "time a store can hold: give a shorter delay; nothing of that job's queue was "
            "stored by this call"
        ) from None


def lock_calls(
    script: str,
    locks: Sequence[tuple[str, str]],
    keys: Any,
    first: bytes | str | int,
    *after: bytes | str | int,
) -> tuple[list[bool], list[Call], list[list[int]]]:
    """The ``complete_many.lua`` or ``extend_many.lua`` calls for ``(job_id, lock_token)``
    pairs: one per queue per ``_LOCKS_BATCH`` jobs, each ``[first, "number:token,...",
    *after]``.
    Returns the results (all ``False`` until ``ack_results`` fills them: a pair with an id or
    token this store never hands out is refused here, without a call), the calls, and for each
    call the positions of its pairs."""
    results = [False] * len(locks)
    by_queue: dict[str, tuple[list[int], list[str]]] = {}
    for position, (job, token) in enumerate(locks):
        parsed = parse_job_id(job)
        if parsed is None or not isinstance(token, str) or not _TOKEN.fullmatch(token):
            continue
        positions, pairs = by_queue.setdefault(parsed[0], ([], []))
        positions.append(position)
        pairs.append(f"{parsed[1]}:{token}")
    calls: list[Call] = []
    batches: list[list[int]] = []
    for queue, (positions, pairs) in by_queue.items():
        for start in range(0, len(positions), _LOCKS_BATCH):
            chunk = ",".join(pairs[start : start + _LOCKS_BATCH])
            calls.append((script, keys(queue), [first, chunk, *after]))
            batches.append(positions[start : start + _LOCKS_BATCH])
    return results, calls, batches


def cancel_outcome(reply: bytes | str) -> CancelOutcome:
    """``cancel.lua``'s answer."""
    return CancelOutcome(reply.decode() if isinstance(reply, bytes) else reply)


def claim_plan(names: Sequence[str], replies: Sequence[Any], limit: int) -> dict[str, int]:
    """How many jobs to claim from each queue, from the ``peek.lua`` replies of ``names``:
    the best ``limit`` candidates overall, by (priority and run_at, age, queue)."""
    candidates = []
    for queue, reply in zip(names, replies, strict=True):
        for position in range(1, len(reply), 3):
            score, number, created = (int(value) for value in reply[position : position + 3])
            candidates.append((score, created, queue, number))
    candidates.sort()
    return dict(Counter(queue for _, _, queue, _ in candidates[:limit]))


def queue_counts(names: Sequence[str], replies: Sequence[Any]) -> list[QueueCounts]:
    """The counts of the queues ``names`` that hold a job, from their ``counts.lua`` replies."""
    counts = []
    for queue, reply in zip(names, replies, strict=True):
        total, running, failed, completed, ready, cancelled = (int(value) for value in reply)
        if total:
            scheduled = total - running - failed - completed - ready - cancelled
            counts.append(
                QueueCounts(queue, scheduled, ready, running, failed, completed, cancelled)
            )
    return counts


def jobs_by_queue(job_ids: Sequence[str]) -> dict[str, list[tuple[str, int]]]:
    """The well-formed ids among ``job_ids`` by queue, each with its number."""
    by_queue: dict[str, list[tuple[str, int]]] = {}
    for job in job_ids:
        parsed = parse_job_id(job)
        if parsed is not None:
            by_queue.setdefault(parsed[0], []).append((job, parsed[1]))
    return by_queue


def requested(
    by_queue: dict[str, list[tuple[str, int]]], replies: Sequence[Sequence[int]]
) -> set[str]:
    """The ids whose ``SMISMEMBER`` flag (one reply per queue of ``by_queue``) is set."""
    return {
        job
        for jobs, flags in zip(by_queue.values(), replies, strict=True)
        for (job, _), flag in zip(jobs, flags, strict=True)
        if flag
    }


def latest_ticks(replies: Sequence[dict[bytes, bytes]]) -> dict[str, datetime]:
    """The latest tick of each recurring key in the queues' ``ticks`` hashes (a key recorded
    in several queues, its job moved, gives its latest); a value no client can read, written
    past queuebox, counts as no tick recorded."""
    latest: dict[str, int] = {}
    for reply in replies:
        for raw_key, raw_tick in reply.items():
            try:
                tick = int(raw_tick)
                from_ms(tick)
            except (ValueError, OverflowError):
                continue
            name = raw_key.decode(errors="replace")
            latest[name] = max(tick, latest.get(name, tick))
    return {name: from_ms(ms) for name, ms in latest.items()}
