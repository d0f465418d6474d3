"""The Redis store's records: what the client packs for the scripts, and how it reads back
what they store and return (the layout is in ``lua/lib.lua`` and ``docs/redis.md``).

Records are msgpack arrays that the scripts pack with Redis's ``cmsgpack``; the client packs
new jobs and unpacks records with msgpack's C extension. Nothing here does I/O, so the sync
and the asyncio paths build their calls and read their replies with the same code.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgpack

from queuebox.backends.base import JobRecord, JobState, NewJob, reclaim_note
from queuebox.backends.redis_keys import QueueKeys, job_id

if TYPE_CHECKING:
    from queuebox.backends.redis_scripts import Call

__all__ = [
    "EPOCH",
    "ClaimedBatch",
    "EnqueueBatch",
    "ack_results",
    "claim_call",
    "claim_order",
    "decode_record",
    "enqueue_batches",
    "from_ms",
    "new_record",
    "pack_jobs",
    "record_from_fields",
    "scheduled_records",
    "to_ms",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIELDS = 15
_APPLIED = ord("1")
_ENQUEUE_BATCH = 500  # jobs per enqueue script call: bounds how long one call blocks Redis
#: The header of a msgpack array of 2**32 - 1 or fewer values, without its length.
_ARRAY32 = b"\xdd"

#: A batch of one queue's jobs sent in one enqueue call: its queue and the jobs' positions.
EnqueueBatch = tuple[str, list[int]]


def to_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch (rounded down) of an aware datetime."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(milliseconds=1)


def from_ms(value: int) -> datetime:
    return EPOCH + timedelta(milliseconds=value)


# -- what the client sends ----------------------------------------------------------------------


def _job_values(job: NewJob) -> tuple[str, str, int, str | int, str | bool]:
    when: str | int = round(job.delay * 1000) if job.run_at is None else f"@{to_ms(job.run_at)}"
    unique: str | bool = False if job.unique_key is None else job.unique_key
    return job.name, job.handler, job.priority, when, unique


def pack_jobs(jobs: Sequence[NewJob]) -> bytes:
    """``enqueue.lua``'s jobs argument: one msgpack array of the five values of every job
    (name, handler, priority, delay in ms or ``@`` and the run_at in ms, unique key or
    false); one job packed alone is ``tick.lua``'s."""
    packed: bytes = msgpack.packb([value for job in jobs for value in _job_values(job)])
    return packed


def enqueue_batches(
    jobs: Sequence[NewJob], keys: Any, channel: str
) -> tuple[list[Call], list[EnqueueBatch]]:
    """The enqueue script calls that store ``jobs``: one per queue per ``_ENQUEUE_BATCH``
    jobs, and for each the queue and the positions of its jobs. ``keys`` builds a queue's
    ``QueueKeys`` (and checks its name)."""
    by_queue: dict[str, list[int]] = {}
    for index, job in enumerate(jobs):
        by_queue.setdefault(job.queue, []).append(index)
    calls: list[Call] = []
    batches: list[EnqueueBatch] = []
    for queue, indexes in by_queue.items():
        queue_keys: QueueKeys = keys(queue)
        for start in range(0, len(indexes), _ENQUEUE_BATCH):
            batch = indexes[start : start + _ENQUEUE_BATCH]
            packed = pack_jobs([jobs[index] for index in batch])
            calls.append(("enqueue", queue_keys, [channel, queue, packed]))
            batches.append((queue, batch))
    return calls, batches


# -- what the scripts return --------------------------------------------------------------------


def scheduled_records(
    jobs: Sequence[NewJob], batches: Sequence[EnqueueBatch], replies: Sequence[Any]
) -> list[JobRecord]:
    """The records of ``jobs`` from the replies of their ``enqueue_batches`` calls: each job
    as the script stored it, or the record of the job holding its unique key."""
    records: list[JobRecord | None] = [None] * len(jobs)
    for (queue, batch), reply in zip(batches, replies, strict=True):
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
            run_at = now_ms + round(job.delay * 1000) if job.run_at is None else to_ms(job.run_at)
            records[index] = new_record(job, number, run_at, now_ms, times=times)
            number += 1
    return [record for record in records if record is not None]


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


def ack_results(results: list[bool], batches: Sequence[list[int]], replies: Sequence[Any]) -> None:
    """Fill ``results`` from ``complete_many.lua`` replies: one ``1`` or ``0`` per job, for
    the positions in ``batches``."""
    for positions, reply in zip(batches, replies, strict=True):
        flags = reply if isinstance(reply, bytes) else str(reply).encode()
        for position, flag in zip(positions, flags, strict=True):
            results[position] = flag == _APPLIED


def claim_call(keys: QueueKeys, worker_id: str, limit: int, lease: float) -> Call:
    """The ``claim.lua`` call that locks up to ``limit`` jobs of one queue for ``worker_id``
    until ``lease`` seconds from now, with a fresh 128-bit secret for the lock tokens."""
    lease_ms = max(1, round(lease * 1000))
    return ("claim", keys, [worker_id, limit, lease_ms, secrets.token_hex(16)])


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
    ``records()`` (the costly part) while the store works on that round trip.
    """

    __slots__ = ("_now_ms", "_queue", "_values")

    def __init__(self, queue: str, values: list[Any], now_ms: int) -> None:
        self._queue, self._values, self._now_ms = queue, values, now_ms

    @classmethod
    def unpack(cls, queue: str, reply: Sequence[Any]) -> ClaimedBatch:
        """From the reply ``{now, how many jobs, the packed values}``."""
        now_ms, count, blob = int(reply[0]), int(reply[1]), reply[2]
        header = _ARRAY32 + (2 * count).to_bytes(4, "big")
        return cls(queue, msgpack.unpackb(header + blob, raw=False), now_ms)

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
        return _unreadable(queue, number, raw, now_ms, exc)


def _unreadable(queue: str, number: int, raw: bytes, now_ms: int, error: Exception) -> JobRecord:
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


def _absent(value: object) -> bool:
    """Scripts write false for an absent value; records of earlier versions hold nil."""
    return value is None or value is False


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
    if not _absent(done_at):
        state = JobState.COMPLETED
    elif not _absent(failed_at):
        state = JobState.FAILED
    elif not _absent(locked_at):
        state = JobState.RUNNING
    else:
        state = JobState.READY if run_at <= now_ms else JobState.SCHEDULED
    if times is None:
        times = {}

    def when(value: object) -> datetime | None:
        if type(value) is not int:
            return None
        moment = times.get(value)
        if moment is None:
            moment = times[value] = EPOCH + timedelta(milliseconds=value)
        return moment

    if isinstance(last_error, list):  # a reclaim: [previous owner, expired lock's expiry]
        owner, expired = [*last_error, None, None][:2]
        last_error = reclaim_note(str(owner), when(expired))
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
