"""The Redis store: ``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://``.

Every multi-key step is one Lua script on one queue's keys (``lua/*.lua``), so the store runs
unchanged on Redis Cluster with queues spread over shards; ``docs/redis.md`` describes the key
layout, the scripts, the URL options and the memory a waiting job takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
from redis.cluster import RedisCluster

from queuebox.backends.base import (
    Adapter,
    AsyncScheduling,
    Cancellation,
    CancelOutcome,
    Capabilities,
    ClaimAhead,
    JobRecord,
    JobState,
    NewJob,
    Purgeable,
    QueueCounts,
    RecurringStore,
)
from queuebox.backends.redis_calls import (
    ack_results,
    cancel_outcome,
    claim_call,
    claim_plan,
    delay_ms,
    enqueue_batches,
    enqueue_one,
    jobs_by_queue,
    latest_ticks,
    lease_ms,
    lock_calls,
    moment_ms,
    pack_jobs,
    queue_counts,
    refused_schedule,
    requested,
    scheduled_one,
    scheduled_records,
)
from queuebox.backends.redis_client import (
    AsyncClients,
    async_client,
    database_of,
    sync_client,
)
from queuebox.backends.redis_codec import (
    ClaimedBatch,
    claim_order,
    decode_record,
    new_record,
)
from queuebox.backends.redis_flow import RedisFlowControl
from queuebox.backends.redis_keys import (
    DEFAULT_PREFIX,
    KeyCache,
    check_queue,
    history_key,
    minute_key,
    parse_job_id,
    paused_key,
    stats_queues_key,
    wake_channel,
    workers_key,
)
from queuebox.backends.redis_monitor import RedisMonitor
from queuebox.backends.redis_registry import QueueRegistry
from queuebox.backends.redis_scripts import AsyncScriptRunner, ScriptRunner
from queuebox.backends.redis_search import RedisJobSearch
from queuebox.backends.redis_url import parse_url
from queuebox.backends.redis_wait import Waiting
from queuebox.errors import redact_url
from queuebox.validation import is_queue_name

__all__ = ["RedisAdapter"]


class RedisAdapter(
    Adapter,
    ClaimAhead,
    RecurringStore,
    Cancellation,
    AsyncScheduling,
    Purgeable,
    RedisFlowControl,
    RedisMonitor,
    RedisJobSearch,
):
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
        async_client: Callable[[], Any] | None = None,
    ) -> None:
        """Use ``client`` (``decode_responses`` must be off) under the key ``prefix``.

        ``registry_ttl`` is how long a worker on every queue trusts its copy of the queue
        registry before it reads it again. ``async_client`` builds the ``redis.asyncio``
        client of the same server for ``aschedule`` (called once per event loop); without it
        ``aschedule`` runs ``schedule`` in a worker thread.
        """
        if not isinstance(client, (redis.Redis, RedisCluster)):
            hint = (
                "; for a URL use RedisAdapter.from_url(url) or queuebox.backends.from_url(url)"
                if isinstance(client, str)
                else ""
            )
            raise TypeError(
                "RedisAdapter takes a redis.Redis or redis.cluster.RedisCluster client, not "
                f"{type(client).__name__}{hint}"
            )
        self._client: Any = client
        self._keys = KeyCache(prefix)
        self._url = redact_url(url) if url else f"redis ({type(client).__name__})"
        self._owns_client = owns_client
        self._scripts = ScriptRunner(client)
        self._channel = wake_channel(self._keys.prefix, database_of(client))
        self._registry = QueueRegistry(client, self._keys, registry_ttl)
        self._waiting = Waiting(
            client,
            self._scripts,
            self._keys,
            self._registry,
            self._channel,
            claim=self.claim,
            translated_errors=self._translated_errors,
        )
        self._stats_known = set()
        self._stats_lock = threading.Lock()
        self._async = AsyncClients(async_client) if async_client is not None else None
        self._async_scripts = AsyncScriptRunner(self._scripts)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisAdapter:
        """Build from a URL; ``?prefix=`` and ``?registry_ttl=`` are the adapter's own options,
        every other query parameter goes to redis-py (``socket_timeout``, ``ssl_cert_reqs``...).
        """
        parsed = parse_url(url)
        settings: dict[str, Any] = {"prefix": parsed.prefix}
        if parsed.registry_ttl is not None:
            settings["registry_ttl"] = parsed.registry_ttl
        settings.update(options)
        client = sync_client(parsed)
        return cls(
            client,
            url=parsed.shown,
            owns_client=True,
            async_client=lambda: async_client(parsed),
            **settings,
        )

    # -- what tests and tools may look at ---------------------------------------------------

    @property
    def client(self) -> Any:
        """The redis-py client (``redis.Redis`` or ``RedisCluster``) the adapter uses."""
        return self._client

    @property
    def prefix(self) -> str:
        """The first part of every key name (see ``redis_keys.QueueKeys``)."""
        return self._keys.prefix

    @property
    def registry_ttl(self) -> float:
        return self._registry.ttl

    def __repr__(self) -> str:
        # What `queuebox status` and the dashboard show for a store configured in code, as
        # the SQL stores' reprs do: which server and namespace, never the password.
        return f"RedisAdapter({self._url!r}, prefix={self._keys.prefix!r})"

    @property
    def wake_channel(self) -> str:
        """The pub/sub channel the scripts publish wake-ups on."""
        return self._channel

    @property
    def url(self) -> str:
        """The store's URL without its password, as messages name it."""
        return self._url

    # -- time and scheduling ----------------------------------------------------------------

    def now(self) -> datetime:
        with self._translated_errors():
            seconds, micros = self._client.time()
        return datetime.fromtimestamp(int(seconds), UTC).replace(microsecond=int(micros))

    def schedule(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        if len(jobs) == 1:
            return [self._schedule_one(jobs[0])]
        if not jobs:
            return []
        calls, batches = enqueue_batches(jobs, self._keys, self._channel)
        with self._translated_errors(), refused_schedule():
            replies = self._scripts.call_many(calls)
            queues = [batch[0] for batch in batches]
            self._registry.register(list(zip(queues, replies, strict=True)))
        return scheduled_records(jobs, batches, replies)

    def _schedule_one(self, job: NewJob) -> JobRecord:
        """``schedule([job])`` on the request path: one script call, its reply read into the
        record at once; errors are translated only when one is raised."""
        queue = job.queue
        keys = self._keys(queue)  # checks the name
        packed, when = enqueue_one(job)
        try:
            reply = self._scripts.call("enqueue", keys, [self._channel, queue, packed])
            if self._registry.noted(queue, reply):
                self._registry.register([(queue, reply)])
        except Exception:
            with self._translated_errors(), refused_schedule():
                raise
        return scheduled_one(job, reply, when)

    async def aschedule(self, jobs: Sequence[NewJob]) -> list[JobRecord]:
        """``schedule`` through the event loop's own asyncio client: the same calls, checks
        and records (built and read by the same code), only the I/O is awaited."""
        if not jobs:
            return []
        if self._async is None:
            return await asyncio.to_thread(self.schedule, list(jobs))
        if len(jobs) == 1:
            return [await self._aschedule_one(self._async, jobs[0])]
        calls, batches = enqueue_batches(jobs, self._keys, self._channel)
        with self._translated_errors(), refused_schedule():
            client = await self._async.current()
            replies = await self._async_scripts.call_many(client, calls)
            queues = [batch[0] for batch in batches]
            new = self._registry.unregistered(list(zip(queues, replies, strict=True)))
            for command in self._registry.commands(new):
                await client.execute_command(*command)
        return scheduled_records(jobs, batches, replies)

    async def _aschedule_one(self, clients: AsyncClients, job: NewJob) -> JobRecord:
        """``_schedule_one`` through the event loop's asyncio client."""
        queue = job.queue
        keys = self._keys(queue)
        packed, when = enqueue_one(job)
        try:
            client = await clients.current()
            args: list[bytes | str | int] = [self._channel, queue, packed]
            reply = await self._async_scripts.call(client, "enqueue", keys, args)
            if self._registry.noted(queue, reply):
                for command in self._registry.commands([queue]):
                    await client.execute_command(*command)
        except Exception:
            with self._translated_errors(), refused_schedule():
                raise
        return scheduled_one(job, reply, when)

    async def aclose(self) -> None:
        if self._async is not None:
            with self._translated_errors():
                await self._async.aclose()

    # -- recurring jobs ---------------------------------------------------------------------

    def schedule_tick(
        self, key: str, tick: datetime, job: NewJob, *, store: bool = True
    ) -> JobRecord | None:
        """Record ``tick`` for ``key`` in ``job.queue``'s ``ticks`` hash and store ``job``, in
        one ``tick.lua`` call; ``None`` when the tick was not newer or the unique key held."""
        queue = check_queue(job.queue)
        args: list[bytes | str | int] = [self._channel, queue, key, moment_ms(tick, "tick")]
        args += [int(store), pack_jobs([job])]
        with self._translated_errors(), refused_schedule():
            reply = self._scripts.call("tick", self._keys(queue), args)
            self._registry.register([(queue, reply)])
        if not int(reply[2]) or not store or reply[5]:
            return None
        return new_record(job, int(reply[3]), int(reply[4]), int(reply[0]))

    def recurring_ticks(self) -> dict[str, datetime]:
        """The ``ticks`` hashes of every registered queue, read in one pipeline (per node on a
        cluster); a key recorded in several queues (its job moved) gives its latest tick."""
        with self._translated_errors():
            names = self._registry.everything()
            if not names:
                return {}
            pipe = self._client.pipeline(transaction=False)
            for queue in names:
                pipe.hgetall(self._keys(queue).ticks)
            return latest_ticks(pipe.execute())

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
        with self._translated_errors():
            names = self._registry.names(queues)
            if not names:
                return []
            plan = {names[0]: limit} if len(names) == 1 else self._plan(names, limit)
            calls = [claim_call(self._keys(q), worker_id, n, lease) for q, n in plan.items()]
            replies = self._scripts.call_many(calls)
        records = []
        for queue, reply in zip(plan, replies, strict=True):
            records += ClaimedBatch.unpack(queue, reply).records()  # each in claim order
        return records if len(plan) == 1 else claim_order(records)

    def _plan(self, names: list[str], limit: int) -> dict[str, int]:
        """How many jobs to claim from each queue: the best ``limit`` candidates overall."""
        replies = self._scripts.call_many([("peek", self._keys(queue), [limit]) for queue in names])
        return claim_plan(names, replies, limit)

    def _owned_call(self, script: str, job: str, token: str, *args: str | int) -> bool:
        parsed = parse_job_id(job)
        if parsed is None or not isinstance(token, str) or not token:
            return False
        queue, number = parsed
        with self._translated_errors():
            return bool(self._scripts.call(script, self._keys(queue), [number, token, *args]))

    def complete(self, job_id: str, lock_token: str, *, keep: bool = False) -> bool:
        return self._owned_call("complete", job_id, lock_token, int(keep), self._channel)

    def complete_many(self, acks: Sequence[tuple[str, str]], *, keep: bool = False) -> list[bool]:
        """Acknowledge many jobs with one ``complete_many.lua`` call per queue (per
        1000 jobs), pipelined: one round trip per Redis node. A token that this store never
        hands out is refused here, without a call."""
        results, calls, batches = lock_calls(
            "complete_many", acks, self._keys, int(keep), self._channel
        )
        if calls:
            with self._translated_errors():
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
        results, calls, batches = lock_calls(
            "complete_many", acks, self._keys, int(keep), self._channel
        )
        calls.append(claim_call(self._keys(check_queue(queue)), worker_id, limit, lease))
        with self._translated_errors():
            pending = self._scripts.send_many(calls)

        def receive() -> tuple[list[bool], ClaimedBatch]:
            with self._translated_errors():
                replies = pending.read()
            ack_results(results, batches, replies[:-1])  # the claim's reply is the last
            return results, ClaimedBatch.unpack(queue, replies[-1])

        return receive

    def reschedule(self, job_id: str, lock_token: str, *, delay: float, error: str) -> bool:
        parsed = parse_job_id(job_id)
        extra = [self._channel, parsed[0]] if parsed else []
        wait = delay_ms(delay, "delay", clamp=True)
        return self._owned_call("reschedule", job_id, lock_token, wait, error, *extra)

    def fail(self, job_id: str, lock_token: str, *, error: str, keep: bool = True) -> bool:
        return self._owned_call("fail", job_id, lock_token, error, int(keep), self._channel)

    def release(self, job_id: str, lock_token: str) -> bool:
        parsed = parse_job_id(job_id)
        extra = [self._channel, parsed[0]] if parsed else []
        return self._owned_call("release", job_id, lock_token, *extra)

    def extend(self, job_id: str, lock_token: str, *, lease: float) -> bool:
        return self.extend_many([(job_id, lock_token)], lease=lease)[0]

    def extend_many(self, locks: Sequence[tuple[str, str]], *, lease: float) -> list[bool]:
        """Renew many locks with one ``extend_many.lua`` call per queue, pipelined: one round
        trip per Redis node, whatever the number of jobs a worker holds."""
        results, calls, batches = lock_calls("extend_many", locks, self._keys, lease_ms(lease))
        if calls:
            with self._translated_errors():
                replies = self._scripts.call_many(calls)
            ack_results(results, batches, replies)
        return results

    # -- cancellation -----------------------------------------------------------------------

    def cancel(self, job_id: str) -> CancelOutcome:
        """One ``cancel.lua`` call: a waiting job (or one whose worker died) is cancelled at
        once, a running one is marked for its worker."""
        parsed = parse_job_id(job_id)
        if parsed is None:
            return CancelOutcome.NOT_FOUND
        queue, number = parsed
        with self._translated_errors():
            reply = self._scripts.call("cancel", self._keys(queue), [number, self._channel])
        return cancel_outcome(reply)

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """``SMISMEMBER`` on each queue's ``cancelling`` set, pipelined: one round trip per
        Redis node."""
        by_queue = jobs_by_queue(job_ids)
        if not by_queue:
            return set()
        with self._translated_errors():
            pipe = self._client.pipeline(transaction=False)
            for queue, jobs in by_queue.items():
                pipe.smismember(self._keys(queue).cancelling, [number for _, number in jobs])
            replies = pipe.execute()
        return requested(by_queue, replies)

    def mark_cancelled(self, job_id: str, lock_token: str, *, error: str | None = None) -> bool:
        given: list[str | int] = [1, error] if error is not None else [0, ""]
        return self._owned_call("mark_cancelled", job_id, lock_token, *given, self._channel)

    # -- waiting ----------------------------------------------------------------------------

    def wait_for_work(self, queues: Sequence[str] | None, timeout: float) -> None:
        self._waiting.wait_for_work(queues, timeout)

    def wait_and_claim(
        self, worker_id: str, queue: str, *, limit: int, lease: float, timeout: float
    ) -> list[JobRecord]:
        return self._waiting.wait_and_claim(
            worker_id, queue, limit=limit, lease=lease, timeout=timeout
        )

    # -- inspection and administration ------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        parsed = parse_job_id(job_id)
        if parsed is None:
            return None
        queue, number = parsed
        with self._translated_errors():
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
        with self._translated_errors():
            now_ms = self._time_ms()
            for queue in self._registry.names(queues):
                if len(found) >= offset + limit:
                    break
                records = [
                    decode_record(queue, int(field), raw, now_ms)
                    for field, raw in self._client.hscan_iter(self._keys(queue).jobs, count=500)
                    if field.isdigit()  # a field no script wrote has no job id
                ]
                records.sort(key=lambda r: (r.priority, r.run_at, len(r.id), r.id))
                found += [r for r in records if wanted is None or r.state in wanted]
        return found[offset : offset + limit]

    def counts(self) -> list[QueueCounts]:
        with self._translated_errors():
            names = self._registry.names(None)
            replies = self._scripts.call_many([("counts", self._keys(q), []) for q in names])
        return queue_counts(names, replies)

    def _by_id(self, script: str, job: str, *args: str) -> bool:
        parsed = parse_job_id(job)
        if parsed is None:
            return False
        queue, number = parsed
        with self._translated_errors():
            return bool(self._scripts.call(script, self._keys(queue), [number, *args]))

    def retry(self, job_id: str) -> bool:
        parsed = parse_job_id(job_id)
        return parsed is not None and self._by_id("retry", job_id, self._channel, parsed[0])

    def delete(self, job_id: str) -> bool:
        return self._by_id("delete", job_id, self._channel)

    def clear(self, queues: Sequence[str] | None = None) -> int:
        with self._translated_errors():
            names = (
                self._registry.names(queues) if queues is not None else self._registry.everything()
            )
            replies = self._scripts.call_many([("clear", self._keys(q), []) for q in names])
        return sum(int(reply) for reply in replies)

    def migrate(self) -> None:
        """Load every script into the server's script cache (they also load on first use),
        then bring the keys of every registered queue written by an earlier version to the
        current layout (``upgrade.lua``: idempotent, so running it again changes nothing)."""
        with self._translated_errors():
            self._scripts.load_all()
            names = self._registry.everything()
            self._scripts.call_many([("upgrade", self._keys(q), []) for q in names])

    def purge(self) -> None:
        """Delete every key under this adapter's prefix that it knows of: the jobs of every
        registered, paused or monitored queue, their counters, recurring ticks, limit keys
        and throughput history, the worker registry and the lists of queues. Job ids may be
        reused after."""
        prefix = self._keys.prefix
        with self._translated_errors():
            names = sorted(
                set(self._registry.everything())
                | set(self._listed(paused_key(prefix)))
                | set(self._listed(stats_queues_key(prefix)))
            )
            self._scripts.call_many([("clear", self._keys(q), []) for q in names])
            for queue in names:
                keys = self._keys(queue)
                index = history_key(prefix, queue)
                minutes = [int(m) for m in self._client.zrange(index, 0, -1)]
                self._client.delete(keys.meta, keys.ticks, index)
                for start in range(0, len(minutes), 500):
                    chunk = minutes[start : start + 500]
                    self._client.delete(*(minute_key(prefix, queue, m) for m in chunk))
            for key in (paused_key(prefix), stats_queues_key(prefix), workers_key(prefix)):
                self._client.delete(key)
            self._client.delete(self._registry.key)
        self._registry.forget()
        with self._stats_lock:
            self._stats_known.clear()

    def _listed(self, key: str) -> list[str]:
        """The queue names in the set ``key`` (names that are not queue names left out)."""
        names = (n.decode() if isinstance(n, bytes) else str(n) for n in self._client.smembers(key))
        return [name for name in names if is_queue_name(name)]

    def close(self) -> None:
        """Close the sync client (when the adapter built it) and the wake subscription. The
        asyncio clients belong to their loops: ``await aclose()`` in each."""
        self._waiting.close()
        if self._owns_client:
            with contextlib.suppress(Exception):
                self._client.close()
