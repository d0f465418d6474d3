"""``WorkerRegistry`` and ``ThroughputHistory`` on the Redis store.

* The registry is one hash, ``<prefix>:workers``: worker id -> ``"<beat ms> <ttl ms>
  <record>"``, written by ``worker_beat.lua`` on Redis's clock and read (lost workers dropped)
  by ``worker_list.lua``.
* The history lives beside each queue, in its hash slot: ``<prefix>:{q}:m:<minute ms>``
  hashes of counters, indexed by ``<prefix>:{q}:minutes``, each expiring ``retention`` after
  its minute (``stats_add.lua``, ``stats_read.lua``). ``<prefix>:stats:queues`` lists the
  queues that have history.

A beat with tallies is one pipeline: the registry script and one history script per queue,
one round trip per Redis node (``ScriptRunner.call_many``).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgpack

from queuebox.backends.base import (
    RUNTIME_BUCKETS,
    MinuteStats,
    ThroughputHistory,
    WorkerInfo,
    WorkerRegistry,
)
from queuebox.backends.redis_codec import from_ms, to_ms
from queuebox.backends.redis_keys import check_queue, stats_queues_key, workers_key
from queuebox.backends.redis_parts import RedisParts
from queuebox.errors import ValidationError
from queuebox.validation import is_queue_name

if TYPE_CHECKING:
    from queuebox.backends.redis_scripts import Call

__all__ = ["RedisMonitor"]

_COUNTS = ("s", "r", "f", "c")  # succeeded, retried, failed, cancelled (stats_add.lua)
_BUCKETS = len(RUNTIME_BUCKETS) + 1


class RedisMonitor(RedisParts, WorkerRegistry, ThroughputHistory):
    _stats_known: set[str]  # queues this adapter has listed in <prefix>:stats:queues
    _stats_lock: threading.Lock

    # -- the worker registry ------------------------------------------------------------------

    def beat(self, worker: WorkerInfo, *, ttl: float, stats: Sequence[MinuteStats] = ()) -> None:
        """``worker_beat.lua`` and the tallies' ``stats_add.lua`` calls in one pipeline."""
        calls = [self._beat_call(worker, ttl), *self._stats_calls(stats)]
        with self._translated_errors():
            self._list_stats_queues(stats)
            self._scripts.call_many(calls)

    def _beat_call(self, worker: WorkerInfo, ttl: float) -> Call:
        if not isinstance(worker, WorkerInfo):
            raise ValidationError(f"beat() takes a WorkerInfo, not {type(worker).__name__}")
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl < math.inf:
            raise ValidationError(f"ttl={ttl!r} is not valid: give a number of seconds above 0")
        keys = [workers_key(self._keys.prefix)]
        return ("worker_beat", keys, [worker.id, max(1, round(ttl * 1000)), worker.to_json()])

    def retire(self, worker_id: str) -> None:
        with self._translated_errors():
            self._client.hdel(workers_key(self._keys.prefix), str(worker_id))

    def workers(self) -> list[WorkerInfo]:
        """One ``worker_list.lua`` call, which also drops workers lost for over
        ``lost_kept``; a value queuebox did not write is skipped."""
        keys = [workers_key(self._keys.prefix)]
        kept = max(0, round(self.lost_kept * 1000))
        with self._translated_errors():
            reply = self._scripts.call("worker_list", keys, [kept])
        now_ms = int(reply[0])
        found = []
        for value in reply[2::2]:
            worker = _worker(value, now_ms)
            if worker is not None:
                found.append(worker)
        return sorted(found, key=lambda worker: (worker.host, worker.id))

    # -- throughput history -------------------------------------------------------------------

    def add_stats(self, stats: Sequence[MinuteStats]) -> None:
        calls = self._stats_calls(stats)
        if calls:
            with self._translated_errors():
                self._list_stats_queues(stats)
                self._scripts.call_many(calls)

    def _stats_calls(self, stats: Sequence[MinuteStats]) -> list[Call]:
        """One ``stats_add.lua`` call per queue; every tally is checked before any is sent."""
        by_queue: dict[str, list[list[Any]]] = {}
        for tally in stats:
            by_queue.setdefault(check_queue(tally.queue), []).append(_packed_tally(tally))
        retention = max(1, round(self.retention * 1000))
        return [
            ("stats_add", self._keys(queue), [retention, msgpack.packb(tallies)])
            for queue, tallies in by_queue.items()
        ]

    def _list_stats_queues(self, stats: Sequence[MinuteStats]) -> None:
        """List the tallies' queues in ``<prefix>:stats:queues`` (once per queue and adapter)."""
        with self._stats_lock:
            new = sorted({tally.queue for tally in stats} - self._stats_known)
        if new:
            self._client.sadd(stats_queues_key(self._keys.prefix), *new)
            with self._stats_lock:
                self._stats_known.update(new)

    def stats(self, *, since: datetime, queues: Sequence[str] | None = None) -> list[MinuteStats]:
        """One ``stats_read.lua`` call per queue, pipelined (one round trip per node)."""
        if not isinstance(since, datetime) or since.utcoffset() is None:
            raise ValidationError(f"since={since!r} is not valid: give a timezone-aware datetime")
        first = to_ms(since)
        retention = max(1, round(self.retention * 1000))
        with self._translated_errors():
            names = self._stats_queues() if queues is None else sorted(map(check_queue, queues))
            calls: list[Call] = [
                ("stats_read", self._keys(queue), [first, retention]) for queue in names
            ]
            replies = self._scripts.call_many(calls) if calls else []
        found = [
            tally
            for queue, reply in zip(names, replies, strict=True)
            for tally in _tallies(queue, reply)
        ]
        return sorted(found, key=lambda t: (t.minute, t.queue, t.name))

    def _stats_queues(self) -> list[str]:
        listed = self._client.smembers(stats_queues_key(self._keys.prefix))
        names = {n.decode() if isinstance(n, bytes) else str(n) for n in listed}
        return sorted(name for name in names if is_queue_name(name))


def _packed_tally(tally: MinuteStats) -> list[Any]:
    """``stats_add.lua``'s values of one tally, checked: counts are whole numbers >= 0."""
    counts = [tally.succeeded, tally.retried, tally.failed, tally.cancelled]
    buckets = list(tally.runtime_counts)
    total = tally.runtime_sum
    if (
        not isinstance(tally.minute, datetime)
        or tally.minute.utcoffset() is None
        or not isinstance(tally.name, str)
        or not tally.name
        or len(buckets) != _BUCKETS
        or any(type(count) is not int or count < 0 for count in counts + buckets)
        or isinstance(total, bool)
        or not isinstance(total, int | float)
        or not math.isfinite(total)
    ):
        raise ValidationError(
            f"{tally!r} is not a tally a store can add: give an aware minute, a job name, "
            f"whole counts >= 0, {_BUCKETS} run-time buckets and a finite run-time sum"
        )
    return [to_ms(tally.minute), tally.name, *counts, repr(float(total)), *buckets]


def _tallies(queue: str, reply: Sequence[Any]) -> list[MinuteStats]:
    """The tallies of one ``stats_read.lua`` reply; a field queuebox did not write is skipped."""
    found = []
    for minute_ms, fields in zip(reply[::2], reply[1::2], strict=True):
        minute = from_ms(int(minute_ms))
        by_name: dict[str, dict[str, str]] = {}
        for raw_field, raw_value in zip(fields[::2], fields[1::2], strict=True):
            name, bar, what = raw_field.decode(errors="replace").rpartition("|")
            if bar:
                by_name.setdefault(name, {})[what] = raw_value.decode(errors="replace")
        for name, values in sorted(by_name.items()):
            try:
                succeeded, retried, failed, cancelled = (int(values.get(w, 0)) for w in _COUNTS)
                buckets = tuple(int(values.get(f"b{i}", 0)) for i in range(_BUCKETS))
                total = float(values.get("t", 0.0))
            except ValueError:
                continue
            found.append(
                MinuteStats(
                    queue, name, minute, succeeded, retried, failed, cancelled, buckets, total
                )
            )
    return found


def _worker(value: bytes, now_ms: int) -> WorkerInfo | None:
    """The worker a registry value describes, ``None`` for one queuebox did not write."""
    try:
        beat, ttl, text = value.decode().split(" ", 2)
        beat_ms, ttl_ms = int(beat), int(ttl)
        return WorkerInfo.from_json(text, beat_at=from_ms(beat_ms), lost=now_ms - beat_ms > ttl_ms)
    except (ValueError, UnicodeDecodeError, OverflowError):
        return None
