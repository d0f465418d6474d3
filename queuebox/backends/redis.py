"""The Redis store: ``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``.

Every multi-key step is one Lua script on one queue's keys (``lua/*.lua``), so the store runs
unchanged on Redis Cluster with queues spread over shards; ``docs/redis.md`` describes the key
layout, the scripts, the URL options and the memory a waiting job takes.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import (
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from queuebox.backends.base import (
    Adapter,
    Capabilities,
    ClaimAhead,
    Purgeable,
    RecurringStore,
    JobRecord,
    JobState,
    NewJob,
    QueueCounts,
)
from queuebox.backends.redis_keys import (
    DEFAULT_PREFIX,
    ClaimedBatch,
    QueueKeys,
    ack_results,
    check_prefix,
    check_queue,
    claim_order,
    decode_claimed,
    decode_record,
    enqueue_values,
    from_ms,
    new_record,
    pack_jobs,
    parse_job_id,
    registry_key,
    split_url,
    to_ms,
    wake_channel,
)
from queuebox.backends.redis_scripts import Call, ScriptRunner
from queuebox.backends.redis_wait import WaitingMixin
from queuebox.errors import ConfigurationError, StorageUnavailable, redact_url
from queuebox.validation import is_queue_name

__all__ = ["RedisAdapter"]

_UNAVAILABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    TryAgainError,
    ReadOnlyError,
    RedisClusterException,
)
_ENQUEUE_BATCH = 500  # jobs per enqueue script call: bounds how long one call blocks Redis
_KEY_CACHE_MAX = 10_000  # queues whose key names are kept built
_ACK_BATCH = 1000  # jobs per complete_many script call, for the same reason
#: Lock tokens are minted by claim.lua from a random hex secret and the job number; an ack
#: with any other text cannot match, and complete_many.lua could not parse it.
_TOKEN = re.compile(r"[A-Za-z0-9_\-]{1,200}")


class RedisAdapter(WaitingMixin, Adapter, ClaimAhead, RecurringStore, Purgeable):
    """Jobs in Redis, one hash tag per queue. Thread-safe; each process builds its own."""

    schemes = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
    capabilities = Capabilities(wakeup=True, multiprocess=True, keep_completed=True, unique=True)

    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        *,
        prefix: str = DEFAULT_PREFIX,
        url: str | None = None,
        registry_ttl: float = 1.0,
        owns_client: bool = False,
    ) -> None:
        """Use ``client`` (``decode_responses`` must be off) under the key ``prefix``.

        ``registry_ttl`` is how long a worker on every queue trusts its copy of the queue
        registry before it reads it again.
        """
        self._client: Any = client
        self._prefix = check_prefix(prefix)
        self._url = redact_url(url) if url else f"redis ({type(client).__name__})"
        self._owns_client = owns_client
        self._registry_ttl = registry_ttl
        self._scripts = ScriptRunner(client)
        self._channel = wake_channel(self._prefix)
        self._registry = registry_key(self._prefix)
        self._known: set[str] = set()
        self._key_cache: dict[str, QueueKeys] = {}
        self._known_at = float("-inf")
        self._lock = threading.Lock()
        self._wait_lock = threading.Lock()
        self._pubsub: Any = None
        self._pid = os.getpid()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisAdapter:
        """Build from a URL; ``?prefix=`` and ``?registry_ttl=`` are the adapter's own options,
        every other query parameter goes to redis-py (``socket_timeout``, ``ssl_cert_reqs``...).
        """
        client_url, cluster, settings = split_url(url)
        settings.update(options)
        try:
            client: redis.Redis | RedisCluster
            if cluster:
                client = RedisCluster.from_url(client_url)
            else:
                client = redis.Redis.from_url(client_url)
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(f"cannot connect to Redis: {exc}", url=url) from exc
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"bad Redis URL {redact_url(url)}: {exc}") from exc
        return cls(client, url=url, owns_client=True, **settings)

    # -- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except _UNAVAILABLE as exc:
            raise StorageUnavailable(f"Redis is unavailable: {exc}", url=self._url) from exc

    def _keys(self, queue: str) -> QueueKeys:
        keys = self._key_cache.get(queue)
        if keys is None:
            keys = QueueKeys.of(self._prefix, queue)
            if len(self._key_cache) < _KEY_CACHE_MAX:
                self._key_cache[queue] = keys
        return keys

    def _queues(self, queues: Sequence[str] | None) -> list[str]:
        """The queue names to work on, sorted; ``None`` means every registered queue."""
        if queues is not None:
            return sorted({check_queue(queue) for queue in queues})
        with self._lock:
            fresh = time.monotonic() - self._known_at < self._registry_ttl
            if fresh:
                return sorted(self._known)
        names = self._client.smembers(self._registry)
        decoded = {n.decode() if isinstance(n, bytes) else str(n) for n in names}
        with self._lock:
            self._known |= {name for name in decoded if is_queue_name(name)}
            self._known_at = time.monotonic()
            return sorted(self._known)

    def _register(self, queues: Sequence[str]) -> None:
        """Add new queues to the registry, then mark them so enqueues stop asking."""
        for queue in queues:
            self._client.sadd(self._registry, queue)
            self._client.hset(self._keys(queue).meta, "reg", 1)

    def _time_ms(self) -> int:
        seconds, micros = self._client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # -- time and scheduling ----------------------------------------------------------------

    def now(self) -> datetime:
        with self._guard():
            seconds, micros = self._client.time()
        return datetime.fromtimestamp(int(seconds), UTC).replace(microsecond=int(micros))

    def schedule(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        if not jobs:
            return []
        by_queue: dict[str, list[int]] = {}
        for index, job in enumerate(jobs):
            queue = job.queue
            if queue not in by_queue:
                check_queue(queue)
                by_queue[queue] = []
            by_queue[queue].append(index)
        calls: list[Call] = []
        batches: list[tuple[str, list[int]]] = []
        for queue, indexes in by_queue.items():
            for start in range(0, len(indexes), _ENQUEUE_BATCH):
                batch = indexes[start : start + _ENQUEUE_BATCH]
                packed = pack_jobs([jobs[index] for index in batch])
                calls.append(("enqueue", self._keys(queue), [self._channel, queue, packed]))
                batches.append((queue, batch))
        with self._guard():
            replies = self._scripts.call_many(calls)
            self._registered([(q, reply) for (q, _), reply in zip(batches, replies, strict=True)])
        records: list[JobRecord | None] = [None] * len(jobs)
        for (queue, batch), reply in zip(batches, replies, strict=True):
            now_ms, number = int(reply[0]), int(reply[2])
            held = {
                int(reply[i]) - 1: (int(reply[i + 1]), reply[i + 2])
                for i in range(3, len(reply), 3)
            }
            times: dict[int, datetime] = {}
            for position, index in enumerate(batch):
                job = jobs[index]
                if position in held:  # not stored: its unique key's holder instead
                    holder, raw = held[position]
                    records[index] = decode_record(queue, holder, raw, now_ms, times=times)
                    continue
                run_at = (
                    now_ms + round(job.delay * 1000) if job.run_at is None else to_ms(job.run_at)
                )
                records[index] = new_record(job, number, run_at, now_ms, "", times=times)
                number += 1
        return [record for record in records if record is not None]

    def _registered(self, replies: Sequence[tuple[str, Any]]) -> None:
        """Register the queues whose enqueue or tick script said they were not yet."""
        self._register(sorted({queue for queue, reply in replies if not reply[1]}))
        with self._lock:
            self._known.update(queue for queue, _ in replies)

    # -- recurring jobs ---------------------------------------------------------------------

    def schedule_tick(
        self, key: str, tick: datetime, job: NewJob, *, store: bool = True
    ) -> JobRecord | None:
        """Record ``tick`` for ``key`` in ``job.queue``'s ``ticks`` hash and store ``job``, in
        one ``tick.lua`` call; ``None`` when the tick was not newer or the unique key held."""
        queue = check_queue(job.queue)
        args = [self._channel, queue, key, to_ms(tick), int(store), *enqueue_values(job)]
        with self._guard():
            reply = self._scripts.call("tick", self._keys(queue), args)
            self._registered([(queue, reply)])
        if not int(reply[2]) or not store or reply[5]:
            return None
        return new_record(job, int(reply[3]), int(reply[4]), int(reply[0]), b"")

    def recurring_ticks(self) -> dict[str, datetime]:
        """The ``ticks`` hashes of every registered queue, read in one pipeline (per node on a
        cluster); a key recorded in several queues (its job moved) gives its latest tick."""
        latest: dict[str, int] = {}
        with self._guard():
            names = self._all_registered()
            if not names:
                return {}
            pipe = self._client.pipeline(transaction=False)
            for queue in names:
                pipe.hgetall(self._keys(queue).ticks)
            replies = pipe.execute()
        for reply in replies:
            for raw_key, raw_tick in reply.items():
                name = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
                latest[name] = max(int(raw_tick), latest.get(name, int(raw_tick)))
        return {name: from_ms(ms) for name, ms in latest.items()}

    # -- execution --------------------------------------------------------------------------

    def claim(
        self,
        worker_id: str,
        queues: Sequence[str] | None,
        *,
        limit: int = 1,
        lease: float,
    ) -> list[JobRecord]:
        if limit < 1:
            return []
        lease_ms = max(1, round(lease * 1000))
        with self._guard():
            names = self._queues(queues)
            if not names:
                return []
            plan = {names[0]: limit} if len(names) == 1 else self._plan(names, limit)
            calls: list[Call] = [
                (
                    "claim",
                    self._keys(queue),
                    [worker_id, count, lease_ms, secrets.token_hex(16)],
                )
                for queue, count in plan.items()
            ]
            replies = self._scripts.call_many(calls)
        records = []
        for queue, reply in zip(plan, replies, strict=True):
            records += decode_claimed(queue, reply[1], int(reply[0]))  # each in claim order
        return records if len(plan) == 1 else claim_order(records)

    def _plan(self, names: list[str], limit: int) -> dict[str, int]:
        """How many jobs to claim from each queue: the best ``limit`` candidates overall."""
        replies = self._scripts.call_many([("peek", self._keys(queue), [limit]) for queue in names])
        candidates = []
        for queue, reply in zip(names, replies, strict=True):
            for position in range(1, len(reply), 3):
                score, number, created = (int(value) for value in reply[position : position + 3])
                candidates.append((score, created, queue, number))
        candidates.sort()
        return dict(Counter(queue for _, _, queue, _ in candidates[:limit]))

    def _owned_call(self, script: str, job: str, token: str, *args: str | int) -> bool:
        parsed = parse_job_id(job)
        if parsed is None or not isinstance(token, str) or not token:
            return False
        queue, number = parsed
        with self._guard():
            return bool(self._scripts.call(script, self._keys(queue), [number, token, *args]))

    def complete(self, job_id: str, lock_token: str, *, keep: bool = False) -> bool:
        return self._owned_call("complete", job_id, lock_token, int(keep))

    def complete_many(self, acks: Sequence[tuple[str, str]], *, keep: bool = False) -> list[bool]:
        """Acknowledge many jobs with one ``complete_many.lua`` call per queue (per
        ``_ACK_BATCH`` jobs), pipelined: one round trip per Redis node. A token that this
        store never hands out (see ``_TOKEN``) is refused here, without a call."""
        results, calls, batches = self._ack_calls(acks, keep)
        if calls:
            with self._guard():
                replies = self._scripts.call_many(calls)
            ack_results(results, batches, replies)
        return results

    def complete_and_claim(
        self,
        acks: Sequence[tuple[str, str]],
        *,
        keep: bool = False,
        worker_id: str,
        queue: str,
        limit: int,
        lease: float,
    ) -> tuple[list[bool], list[JobRecord]]:
        """``complete_many(acks)`` then ``claim(worker_id, [queue], ...)`` in one pipeline
        (one round trip): a worker on one queue acknowledges a batch and takes the next."""
        receive = self.send_complete_and_claim(
            acks, keep=keep, worker_id=worker_id, queue=queue, limit=limit, lease=lease
        )
        results, batch = receive()
        return results, batch.records()

    def send_complete_and_claim(
        self,
        acks: Sequence[tuple[str, str]],
        *,
        keep: bool = False,
        worker_id: str,
        queue: str,
        limit: int,
        lease: float,
    ) -> Callable[[], tuple[list[bool], ClaimedBatch]]:
        """``complete_and_claim`` in two halves: send the round trip now, and return the
        function that reads its reply (call it once; it holds a pooled connection until then),
        with the claimed jobs unpacked but not yet decoded.

        A worker claiming ahead (``queuebox.runner.prefetch``) runs a batch in between, so
        Redis works on the next batch while the worker works on this one.
        """
        results, calls, batches = self._ack_calls(acks, keep)
        calls.append(self._claim_call(worker_id, queue, limit, lease))
        with self._guard():
            pending = self._scripts.send_many(calls)

        def receive() -> tuple[list[bool], ClaimedBatch]:
            with self._guard():
                replies = pending.read()
            return _claim_reply(queue, results, batches, replies)

        return receive

    def _claim_call(self, worker_id: str, queue: str, limit: int, lease: float) -> Call:
        lease_ms = max(1, round(lease * 1000))
        token = secrets.token_hex(16)
        return ("claim", self._keys(check_queue(queue)), [worker_id, limit, lease_ms, token])

    def _ack_calls(
        self, acks: Sequence[tuple[str, str]], keep: bool
    ) -> tuple[list[bool], list[Call], list[list[int]]]:
        results = [False] * len(acks)
        by_queue: dict[str, tuple[list[int], list[str]]] = {}
        for position, (job, token) in enumerate(acks):
            parsed = parse_job_id(job)
            if parsed is None or not isinstance(token, str) or not _TOKEN.fullmatch(token):
                continue
            positions, pairs = by_queue.setdefault(parsed[0], ([], []))
            positions.append(position)
            pairs.append(f"{parsed[1]}:{token}")
        calls: list[Call] = []
        batches: list[list[int]] = []
        for queue, (positions, pairs) in by_queue.items():
            for start in range(0, len(positions), _ACK_BATCH):
                chunk = ",".join(pairs[start : start + _ACK_BATCH])
                calls.append(("complete_many", self._keys(queue), [int(keep), chunk]))
                batches.append(positions[start : start + _ACK_BATCH])
        return results, calls, batches

    def reschedule(self, job_id: str, lock_token: str, *, delay: float, error: str) -> bool:
        parsed = parse_job_id(job_id)
        extra = [self._channel, parsed[0]] if parsed else []
        delay_ms = max(0, round(delay * 1000))
        return self._owned_call("reschedule", job_id, lock_token, delay_ms, error, *extra)

    def fail(self, job_id: str, lock_token: str, *, error: str, keep: bool = True) -> bool:
        return self._owned_call("fail", job_id, lock_token, error, int(keep))

    def release(self, job_id: str, lock_token: str) -> bool:
        parsed = parse_job_id(job_id)
        extra = [self._channel, parsed[0]] if parsed else []
        return self._owned_call("release", job_id, lock_token, *extra)

    def extend(self, job_id: str, lock_token: str, *, lease: float) -> bool:
        return self._owned_call("extend", job_id, lock_token, max(1, round(lease * 1000)))

    # -- inspection and administration ------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        parsed = parse_job_id(job_id)
        if parsed is None:
            return None
        queue, number = parsed
        with self._guard():
            raw = self._client.hget(self._keys(queue).jobs, str(number))
            if raw is None:
                return None
            return decode_record(queue, number, raw, self._time_ms())

    def list_jobs(
        self,
        *,
        queues: Sequence[str] | None = None,
        states: Sequence[JobState] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JobRecord]:
        """Reads each queue's records with HSCAN: an inspection tool, O(jobs in the queues)."""
        wanted = None if states is None else set(states)
        found: list[JobRecord] = []
        with self._guard():
            now_ms = self._time_ms()
            for queue in self._queues(queues):
                if len(found) >= offset + limit:
                    break
                records = [
                    decode_record(queue, int(field), raw, now_ms)
                    for field, raw in self._client.hscan_iter(self._keys(queue).jobs, count=500)
                ]
                records.sort(key=lambda r: (r.priority, r.run_at, _number(r.id)))
                found += [r for r in records if wanted is None or r.state in wanted]
        return found[offset : offset + limit]

    def counts(self) -> list[QueueCounts]:
        with self._guard():
            names = self._queues(None)
            replies = self._scripts.call_many([("counts", self._keys(q), []) for q in names])
        counts = []
        for queue, reply in zip(names, replies, strict=True):
            total, running, failed, completed, ready = (int(value) for value in reply)
            if total:
                scheduled = total - running - failed - completed - ready
                counts.append(QueueCounts(queue, scheduled, ready, running, failed, completed))
        return counts

    def _by_id(self, script: str, job: str, *args: str) -> bool:
        parsed = parse_job_id(job)
        if parsed is None:
            return False
        queue, number = parsed
        with self._guard():
            return bool(self._scripts.call(script, self._keys(queue), [number, *args]))

    def retry(self, job_id: str) -> bool:
        parsed = parse_job_id(job_id)
        return parsed is not None and self._by_id("retry", job_id, self._channel, parsed[0])

    def delete(self, job_id: str) -> bool:
        return self._by_id("delete", job_id)

    def clear(self, queues: Sequence[str] | None = None) -> int:
        with self._guard():
            names = self._queues(queues) if queues is not None else self._all_registered()
            replies = self._scripts.call_many([("clear", self._keys(q), []) for q in names])
        return sum(int(reply) for reply in replies)

    def _all_registered(self) -> list[str]:
        with self._lock:
            self._known_at = float("-inf")  # read the registry itself, not the cache
        return self._queues(None)

    def migrate(self) -> None:
        """Load every script into the server's script cache (they also load on first use)."""
        with self._guard():
            self._scripts.load_all()

    def purge(self) -> None:
        """Delete every key under this adapter's prefix that it knows of: the jobs of every
        registered queue, their counters, recurring ticks and the registry. Job ids may be
        reused after."""
        with self._guard():
            names = self._all_registered()
            self._scripts.call_many([("clear", self._keys(q), []) for q in names])
            for queue in names:
                self._client.delete(self._keys(queue).meta, self._keys(queue).ticks)
            self._client.delete(self._registry)
        with self._lock:
            self._known.clear()

    def close(self) -> None:
        with self._wait_lock:
            self._drop_pubsub()
        if self._owns_client:
            with contextlib.suppress(Exception):
                self._client.close()


def _number(job: str) -> int:
    parsed = parse_job_id(job)
    return parsed[1] if parsed else 0


def _claim_reply(
    queue: str, results: list[bool], batches: list[list[int]], replies: list[Any]
) -> tuple[list[bool], ClaimedBatch]:
    """Fill ``results`` from the acknowledgement replies; the claim's reply is the last."""
    ack_results(results, batches, replies[:-1])
    now_ms, blob = replies[-1]
    return results, ClaimedBatch.unpack(queue, blob, int(now_ms))
