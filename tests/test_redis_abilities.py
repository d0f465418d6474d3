"""What the Redis store does for its optional abilities beyond what the contract checks:
where cancellation keeps its state, round trips of the batched heartbeat and of
``cancel_requested``, and ``aschedule`` on the asyncio client (NOSCRIPT, loops, forks)."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from redis.connection import AbstractConnection
from test_redis_support import fake_async_redis, fake_redis, isolated_prefix, url_with

from queuebox.backends.base import CancelOutcome, JobRecord, JobState
from queuebox.backends.redis import RedisAdapter
from queuebox.backends.redis_keys import QueueKeys
from queuebox.testing import new_job


class AbilityChecks:
    """Subclasses provide the ``store`` fixture."""

    def test_cancellation_keeps_its_state_in_two_sets(self, store: RedisAdapter) -> None:
        client, keys = store.client, QueueKeys.of(store.prefix, "c")
        waiting, running, other = store.schedule(
            [new_job("c", delay=60, unique_key="w"), new_job("c", 1), new_job("c", 2)]
        )
        held = store.claim("w1", ["c"], limit=2, lease=30)
        assert [job.id for job in held] == [running.id, other.id]
        assert store.cancel(waiting.id) is CancelOutcome.CANCELLED
        assert client.zscore(keys.cancelled, waiting.id.split("/")[1]) is not None
        assert client.hlen(keys.unique) == 0 and client.zcard(keys.sidx) == 0
        assert store.cancel(running.id) is CancelOutcome.REQUESTED
        assert client.smembers(keys.cancelling) == {running.id.split("/")[1].encode()}
        assert store.cancel_requested([job.id for job in held] + ["bogus", "x/1"]) == {running.id}
        # the worker finished it anyway: the request is moot, and dropped with the job
        assert store.complete_many([(job.id, job.lock_token or "") for job in held]) == [True] * 2
        assert client.exists(keys.cancelling) == 0 and store.cancel_requested([running.id]) == set()
        assert [(c.cancelled, c.total) for c in store.counts()] == [(1, 1)]

    def test_a_lapsed_lock_of_a_cancelled_run_is_never_reclaimed(self, store: RedisAdapter) -> None:
        keys = QueueKeys.of(store.prefix, "lapse")
        record = store.schedule_one(new_job("lapse", unique_key="k"))
        store.claim("dying", ["lapse"], limit=1, lease=0.05)
        assert store.cancel(record.id) is CancelOutcome.REQUESTED
        time.sleep(0.15)
        # before any claim looks, every view says cancelled: the lock lapsed
        stored = store.get(record.id)
        assert stored is not None and stored.state is JobState.CANCELLED
        assert [(c.cancelled, c.running) for c in store.counts()] == [(1, 0)]
        assert store.claim("w2", ["lapse"], limit=5, lease=30) == []
        assert store.client.exists(keys.cancelling, keys.running, keys.unique) == 0
        assert [(c.cancelled, c.running) for c in store.counts()] == [(1, 0)]
        again = store.schedule_one(new_job("lapse", unique_key="k"))
        assert again.id != record.id, "the cancelled run gave its unique key back"

    def test_a_cancelled_run_given_back_is_cancelled(self, store: RedisAdapter) -> None:
        record = store.schedule_one(new_job())
        job = store.claim("w1", None, limit=1, lease=30)[0]
        assert store.cancel(record.id) is CancelOutcome.REQUESTED
        assert store.release(record.id, job.lock_token or "")  # a stop before it started
        stored = store.get(record.id)
        assert stored is not None and stored.state is JobState.CANCELLED
        assert store.claim("w1", None, limit=1, lease=30) == []

    def test_clear_delete_and_purge_leave_no_cancellation_keys(self, store: RedisAdapter) -> None:
        keys = QueueKeys.of(store.prefix, "gone")
        a, b, _ = store.schedule([new_job("gone") for _ in range(3)])
        store.claim("w1", ["gone"], limit=1, lease=30)
        assert store.cancel(a.id) is CancelOutcome.REQUESTED
        assert store.cancel(b.id) is CancelOutcome.CANCELLED
        assert store.delete(a.id) and store.client.exists(keys.cancelling) == 0
        assert store.clear(["gone"]) == 2
        assert store.client.exists(keys.cancelled, keys.cancelling) == 0
        store.cancel(store.schedule_one(new_job("gone")).id)
        store.purge()
        assert store.client.exists(*QueueKeys.of(store.prefix, "gone")) == 0
        assert store.schedule_one(new_job("gone")).id == "gone/1", "purge resets the numbers"

    def test_extend_many_renews_each_lock_it_holds(self, store: RedisAdapter) -> None:
        store.schedule([new_job("a"), new_job("a"), new_job("b")])
        held = store.claim("w1", ["a", "b"], limit=3, lease=1)
        locks = [(job.id, job.lock_token or "") for job in held]
        renewed = store.extend_many([*locks, (held[0].id, "stolen"), ("bogus", "t")], lease=600)
        assert renewed == [True, True, True, False, False]
        stored = [store.get(job.id) for job in held]
        assert all(
            s is not None and s.lock_expires_at and s.lock_expires_at > store.now() for s in stored
        )
        running = QueueKeys.of(store.prefix, "a").running
        assert (
            min(score for _, score in store.client.zrange(running, 0, -1, withscores=True))
            > (store.now().timestamp() + 500) * 1000
        )
        assert store.extend(held[2].id, held[2].lock_token or "", lease=600)
        assert store.extend_many([], lease=600) == []

    def test_aschedule_without_an_asyncio_client_runs_schedule_in_a_thread(
        self, store: RedisAdapter
    ) -> None:
        plain = RedisAdapter(store.client, prefix=store.prefix)
        records = asyncio.run(plain.aschedule([new_job("t"), new_job("t", delay=60)]))
        assert [store.get(record.id) for record in records] == records
        asyncio.run(plain.aclose())


class TestAbilitiesOnFakeredis(AbilityChecks):
    @pytest.fixture
    def store(self) -> Iterator[RedisAdapter]:
        server = fakeredis.FakeServer()
        adapter = RedisAdapter(
            fake_redis(server), prefix="qbable", async_client=lambda: fake_async_redis(server)
        )
        yield adapter
        adapter.close()


class TestAbilitiesOnRedis(AbilityChecks):
    @pytest.fixture
    def store(self, redis_url: str) -> Iterator[RedisAdapter]:
        with isolated_prefix(redis_url) as prefix:
            adapter = RedisAdapter.from_url(url_with(redis_url, prefix=prefix))
            yield adapter
            adapter.close()

    def test_round_trips(self, store: RedisAdapter, monkeypatch: pytest.MonkeyPatch) -> None:
        store.schedule([new_job(queue) for queue in ("a", "b", "c") for _ in range(4)])
        store.migrate()
        held = store.claim("w1", ["a", "b", "c"], limit=12, lease=30)
        trips = _count_round_trips(monkeypatch)
        assert all(store.extend_many([(j.id, j.lock_token or "") for j in held], lease=30))
        assert trips() == 1, "the heartbeat of 12 jobs in 3 queues = one pipeline"
        store.cancel(held[0].id)
        assert trips() == 1, "cancel = one EVALSHA"
        assert store.cancel_requested([job.id for job in held]) == {held[0].id}
        assert trips() == 1, "cancel_requested = one pipeline of SMISMEMBER"

    def test_aschedule_uses_the_loops_own_client(
        self, store: RedisAdapter, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store.schedule_one(new_job("x"))  # registers the queue
        store.migrate()
        trips = _count_round_trips(monkeypatch)
        threads_used: set[int] = set()

        async def enqueue() -> list[JobRecord]:
            threads_used.add(threading.get_ident())
            try:
                return await store.aschedule([new_job("x", args=[n]) for n in range(50)])
            finally:
                await store.aclose()

        records = asyncio.run(enqueue())
        assert trips() == 0, "the sync client sent nothing"
        assert [store.get(record.id) for record in records] == records
        store.client.script_flush()  # NOSCRIPT: loaded, then sent again, on the asyncio client
        again = asyncio.run(enqueue())
        assert len({record.id for record in records + again}) == 100
        assert sum(c.ready for c in store.counts()) == 101

    def test_a_loop_that_never_closes_the_client_leaves_no_connection(
        self, store: RedisAdapter
    ) -> None:
        before = len(store.client.client_list())
        records = asyncio.run(store.aschedule([new_job("open")]))  # no aclose
        gc.collect()  # an asyncio connection left open would warn here, an error in tests
        assert len(store.client.client_list()) == before
        assert store.get(records[0].id) == records[0]

    def test_aschedule_in_loops_of_two_threads_at_once(self, store: RedisAdapter) -> None:
        ids: list[str] = []
        errors: list[BaseException] = []

        def in_a_loop() -> None:
            async def enqueue() -> None:
                try:
                    for _ in range(20):
                        ids.extend(r.id for r in await store.aschedule([new_job("two")]))
                finally:
                    await store.aclose()

            try:
                asyncio.run(enqueue())
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=in_a_loop) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors and len(set(ids)) == 40

    def test_aschedule_in_a_forked_child(self, store: RedisAdapter) -> None:
        started, stop = threading.Event(), threading.Event()
        loop = asyncio.new_event_loop()

        async def hold_a_client() -> None:  # the parent's loop keeps its client at the fork
            await store.aschedule([new_job("fork")])
            started.set()
            while not stop.is_set():
                await asyncio.sleep(0.01)
            await store.aclose()

        thread = threading.Thread(target=loop.run_until_complete, args=(hold_a_client(),))
        thread.start()
        assert started.wait(10)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                asyncio.run(store.aschedule([new_job("fork", args=["child"])]))
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        asyncio.run_coroutine_threadsafe(store.aschedule([new_job("fork")]), loop).result(10)
        stop.set()
        thread.join(10)
        loop.close()
        assert os.waitstatus_to_exitcode(status) == 0
        assert [c.ready for c in store.counts()] == [3]


def _count_round_trips(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Counts requests sent by sync connections (a pipeline is one); call it to read and
    reset."""
    count = 0
    original: Any = AbstractConnection.send_packed_command

    def counting(conn: AbstractConnection, command: Any, check_health: bool = True) -> None:
        nonlocal count
        count += 1
        original(conn, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)

    def read() -> int:
        nonlocal count
        seen, count = count, 0
        return seen

    return read
