"""What the Redis store's scripts keep where (records, unique keys, ticks, wake tokens), written
once and run on fakeredis (with the test side's cmsgpack) and on a real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import msgpack
import pytest
import redis
from test_redis_support import fake_redis, isolated_prefix, packed_fields, url_with

from queuebox.backends.base import JobRecord, JobState
from queuebox.backends.redis import RedisAdapter
from queuebox.backends.redis_keys import QueueKeys, wake_list
from queuebox.testing import new_job


class LayoutChecks:
    """Subclasses provide the ``store`` fixture."""

    @pytest.mark.parametrize(
        ("offset", "size"),
        [
            (timedelta(days=-400), 10),  # run_at far before created_at: a negative int64 delta
            (timedelta(seconds=-1), 31),
            (timedelta(days=-20), 32),
            (timedelta(days=365 * 200), 255),  # far in the future
            (timedelta(seconds=3), 256),
            (timedelta(0), 65_535),
            (timedelta(0), 70_000),
        ],
    )
    def test_records_round_trip_through_the_lua_codec(
        self, store: RedisAdapter, offset: timedelta, size: int
    ) -> None:
        now = store.now()
        handler_arg = "é" * (size // 2) + "x" * (size % 2)
        record = store.schedule_one(new_job("codec", 7, args=[handler_arg], run_at=now + offset))
        assert store.get(record.id) == record
        assert abs((record.run_at - (now + offset)).total_seconds()) < 0.002
        if record.state is JobState.READY:
            claimed = store.claim("w" * size, ["codec"], limit=1, lease=30)[0]
            assert claimed.handler == record.handler and claimed.locked_by == "w" * size
            error = "E" * size
            assert store.fail(claimed.id, claimed.lock_token or "", error=error)
            failed = store.get(record.id)
            assert failed is not None and failed.last_error == error
        assert store.delete(record.id)
        assert store.counts() == []

    # -- unique keys and recurring ticks: what the scripts keep in the unique and ticks hashes -----

    def test_records_written_before_the_unique_field_still_decode(
        self, store: RedisAdapter
    ) -> None:
        record = store.schedule_one(new_job("old"))
        keys = QueueKeys.of(store.prefix, "old")
        fields = packed_fields(store, record.id)
        assert len(fields) == 7, "a waiting job without a unique key packs 7 fields, as before"
        old = [*fields, None, None, None, None, "an old error", None, None]  # the 14-field layout
        store.client.hset(keys.jobs, record.id.split("/")[1], msgpack.packb(old))
        again = store.get(record.id)
        assert again is not None and again.unique_key is None and again.last_error == "an old error"
        job = store.claim("w1", ["old"], limit=1, lease=30)[0]
        assert job.id == record.id and job.unique_key is None
        assert store.fail(job.id, job.lock_token or "", error="E")
        assert len(packed_fields(store, job.id)) == 13  # no trailing unique_key field

    def test_unique_hash_follows_the_holder_through_reclaim_and_completion(
        self,
        store: RedisAdapter,
    ) -> None:
        client = store.client
        keys = QueueKeys.of(store.prefix, "uq")
        record = store.schedule_one(new_job("uq", unique_key="k"))
        number = record.id.split("/")[1]
        assert client.hgetall(keys.unique) == {b"k": number.encode()}
        assert packed_fields(store, record.id)[14] == "k"
        first = store.claim("w1", ["uq"], limit=1, lease=0.001)[0]
        time.sleep(0.01)
        second = store.claim("w2", ["uq"], limit=1, lease=30)[0]  # the lock expired: reclaim
        assert second.id == record.id and second.unique_key == "k"
        assert store.schedule_one(new_job("uq", unique_key="k")).id == record.id
        assert not store.complete(first.id, first.lock_token or "")  # lost lock: key stays
        assert client.hgetall(keys.unique) == {b"k": number.encode()}
        assert store.complete(second.id, second.lock_token or "", keep=True)
        assert client.exists(keys.unique) == 0
        kept = store.get(record.id)
        assert kept is not None and kept.state is JobState.COMPLETED and kept.unique_key is None
        assert len(packed_fields(store, record.id)) == 14  # the key left the record too
        assert store.retry(record.id)  # a retried job does not take the key back
        assert client.exists(keys.unique) == 0
        assert store.schedule_one(new_job("uq", unique_key="k")).id != record.id

    def test_a_stale_unique_entry_does_not_block_the_key(self, store: RedisAdapter) -> None:
        client = store.client
        keys = QueueKeys.of(store.prefix, "stale")
        failed = store.schedule_one(new_job("stale"))
        job = store.claim("w1", ["stale"], limit=1, lease=30)[0]
        assert store.fail(job.id, job.lock_token or "", error="E")
        client.hset(keys.unique, mapping={"gone": "999", "done": failed.id.split("/")[1]})
        for key in ("gone", "done"):  # a missing job, a failed job: neither holds the key
            stored = store.schedule_one(new_job("stale", unique_key=key))
            assert stored.id != failed.id and stored.unique_key == key
            assert client.hget(keys.unique, key) == stored.id.split("/")[1].encode()
        assert store.delete(failed.id)  # a job that does not hold an entry leaves it alone
        assert client.hlen(keys.unique) == 2
        assert store.clear(["stale"]) == 2
        assert client.exists(keys.unique) == 0

    def test_ticks_live_beside_the_queue_and_survive_clear(self, store: RedisAdapter) -> None:
        client = store.client
        tick = store.now().replace(microsecond=0)
        assert store.schedule_tick("Nightly", tick, new_job("cron-a"), store=False) is None
        keys = QueueKeys.of(store.prefix, "cron-a")
        assert client.hgetall(keys.ticks) == {
            b"Nightly": str(int(tick.timestamp() * 1000)).encode()
        }
        # A fresh adapter finds the tick: recording one registers the queue even without a job.
        fresh = RedisAdapter(client, prefix=store.prefix)
        assert fresh.recurring_ticks() == {"Nightly": tick}
        later = tick + timedelta(minutes=1)
        stored = fresh.schedule_tick("Nightly", later, new_job("cron-b", run_at=later))
        assert stored is not None and stored.queue == "cron-b" and fresh.get(stored.id) == stored
        assert store.recurring_ticks() == {"Nightly": later}, "a moved job: its latest tick"
        assert store.clear() == 1
        assert store.recurring_ticks() == {"Nightly": later}
        assert store.schedule_tick("Nightly", later, new_job("cron-b")) is None

    # -- batch acknowledgements, batch claims, client-packed enqueues, claim with the wake-up ------

    def test_complete_many_is_fenced_job_by_job(self, store: RedisAdapter) -> None:
        client = store.client
        keys = QueueKeys.of(store.prefix, "acks")
        stored = store.schedule(
            [new_job("acks", unique_key=f"u{i}" if i % 2 else None) for i in range(6)]
        )
        claimed = store.claim("w1", ["acks"], limit=6, lease=30)
        assert [job.id for job in claimed] == [record.id for record in stored]
        assert len({job.lock_token for job in claimed}) == 6, "one token per job"
        first, second, *rest = claimed
        acks = [
            (first.id, first.lock_token or ""),
            (second.id, "wrong-token"),  # refused alone
            (second.id, f"{second.lock_token},{first.id.split('/')[1]}:x"),  # no smuggled pair
            (rest[0].id, f"{rest[0].lock_token} "),  # not a token this store hands out
            (rest[0].id, rest[0].lock_token or ""),
            (rest[0].id, rest[0].lock_token or ""),  # named twice: completed once
            ("acks/999999", "f" * 32),  # no such job
            (rest[1].id, rest[1].lock_token or ""),
            ("bogus", "x"),
        ]
        applied = [True, False, False, False, True, False, False, True, False]
        assert store.complete_many(acks) == applied
        assert store.get(first.id) is None and store.get(rest[0].id) is None
        held = store.get(second.id)
        assert held is not None and held.state is JobState.RUNNING
        # the unique keys of the completed jobs are free again, the running job keeps its own
        assert client.hgetall(keys.unique) == {
            b"u1": second.id.split("/")[1].encode(),
            b"u5": rest[3].id.split("/")[1].encode(),
        }
        assert client.zcard(keys.running) == 3
        kept = [(second.id, second.lock_token or ""), (rest[3].id, rest[3].lock_token or "")]
        assert store.complete_many(kept, keep=True) == [True, True]
        assert client.exists(keys.unique) == 0
        done = store.get(rest[3].id)
        assert done is not None and done.state is JobState.COMPLETED and done.unique_key is None
        assert store.complete_many(kept, keep=True) == [False, False]
        assert [(c.running, c.ready, c.completed) for c in store.counts()] == [(1, 0, 2)]

    def test_a_batch_claim_takes_the_best_jobs_across_buckets_in_order(
        self,
        store: RedisAdapter,
    ) -> None:
        now = store.now()
        jobs = [
            new_job("order", priority=(7, 3, 3, 9)[i % 4], run_at=now - timedelta(seconds=i % 5))
            for i in range(300)  # about five buckets of 64 per priority
        ]
        stored = store.schedule(jobs)
        store.schedule([new_job("order", delay=600)])  # scheduled: never claimed now
        expected = sorted(stored, key=lambda r: (r.priority, r.run_at, int(r.id.split("/")[1])))
        claimed = store.claim("w1", ["order"], limit=130, lease=30)
        claimed += store.claim("w1", ["order"], limit=1, lease=30)
        claimed += store.claim("w1", ["order"], limit=500, lease=30)
        assert [job.id for job in claimed] == [record.id for record in expected]
        assert all(job.attempts == 1 and job.locked_by == "w1" for job in claimed)
        assert store.claim("w1", ["order"], limit=10, lease=30) == []
        assert [(c.running, c.scheduled) for c in store.counts()] == [(300, 1)]

    def test_enqueued_records_are_packed_as_the_scripts_pack_them(
        self, store: RedisAdapter
    ) -> None:
        plain, unique = store.schedule(
            [new_job("packed", 5, args=["é" * 40]), new_job("packed", 5, unique_key="k" * 40)]
        )
        for record, fields in ((plain, 7), (unique, 15)):
            packed = packed_fields(store, record.id)
            created = int(record.created_at.timestamp() * 1000)
            assert packed[:7] == [record.name, record.handler, 5, created, 0, 0, 0]
            assert len(packed) == fields and packed[7:14] == [False] * (
                fields - 8 if fields > 7 else 0
            )
        assert packed_fields(store, unique.id)[14] == "k" * 40
        job = store.claim("w1", ["packed"], limit=1, lease=30)[0]
        assert store.extend(job.id, job.lock_token or "", lease=30)  # rewritten by save_job
        again = store.claim("w1", ["packed"], limit=1, lease=30)[0]
        assert again.id == unique.id and again.unique_key == "k" * 40

    def test_wait_and_claim_takes_jobs_with_the_wake_up(self, store: RedisAdapter) -> None:
        client = store.client
        wake = wake_list(store.prefix, "wq")
        started = time.monotonic()
        assert store.wait_and_claim("w1", "wq", limit=5, lease=30, timeout=0.2) == []
        assert 0.15 < time.monotonic() - started < 2
        got: list[list[JobRecord]] = []
        thread = threading.Thread(
            target=lambda: got.append(
                store.wait_and_claim("w1", "wq", limit=5, lease=30, timeout=5)
            )
        )
        thread.start()
        time.sleep(0.1)
        enqueued = time.monotonic()
        stored = store.schedule([new_job("wq", args=[i]) for i in range(8)])
        thread.join(5)
        assert time.monotonic() - enqueued < 1
        claimed = got[0]
        assert [job.id for job in claimed] == [record.id for record in stored[:5]]
        assert client.llen(wake) >= 1, "jobs are left: a token stays for the next idle worker"
        rest = store.wait_and_claim("w2", "wq", limit=5, lease=30, timeout=5)
        assert len(rest) == 3 and client.exists(wake) == 0, "an emptied queue drops its tokens"
        later = store.schedule_one(new_job("wq", delay=0.3))
        started = time.monotonic()
        woke = store.wait_and_claim("w1", "wq", limit=5, lease=30, timeout=5)
        assert [job.id for job in woke] == [later.id]
        assert 0.2 < time.monotonic() - started < 2, "woken at run_at, not at the timeout"
        assert store.release(woke[0].id, woke[0].lock_token or "")  # a release wakes too
        assert client.llen(wake) == 1
        assert store.clear(["wq"]) == 9 and client.exists(wake) == 0

    def test_wake_tokens_are_bounded(self, store: RedisAdapter) -> None:
        wake = wake_list(store.prefix, "bounded")
        for _ in range(3):
            store.schedule([new_job("bounded") for _ in range(40)])
        assert store.client.llen(wake) == 16
        store.clear(["bounded"])

    def test_complete_and_claim_acknowledges_then_claims(self, store: RedisAdapter) -> None:
        stored = store.schedule([new_job("cc", args=[i]) for i in range(5)])
        first = store.claim("w1", ["cc"], limit=2, lease=30)
        acks = [(first[0].id, first[0].lock_token or ""), (first[1].id, "wrong")]
        results, claimed = store.complete_and_claim(
            acks, worker_id="w1", queue="cc", limit=10, lease=30
        )
        assert results == [True, False]
        assert [job.id for job in claimed] == [record.id for record in stored[2:]]
        assert store.get(first[0].id) is None
        still = store.get(first[1].id)
        assert still is not None and still.state is JobState.RUNNING
        results, claimed = store.complete_and_claim(
            [(job.id, job.lock_token or "") for job in claimed],
            keep=True,
            worker_id="w1",
            queue="cc",
            limit=10,
            lease=30,
        )
        assert results == [True] * 3 and claimed == []
        assert [(c.running, c.completed) for c in store.counts()] == [(1, 3)]

    def test_an_unreadable_record_is_failed_and_the_rest_of_the_batch_claimed(
        self,
        store: RedisAdapter,
    ) -> None:
        broken, *good = store.schedule(
            [new_job("bad", priority=1), *(new_job("bad", args=[i]) for i in range(3))]
        )
        keys = QueueKeys.of(store.prefix, "bad")
        store.client.hset(keys.jobs, broken.id.split("/")[1], b"\xc1 not msgpack")
        claimed = store.claim("w1", ["bad"], limit=10, lease=30)
        assert [job.id for job in claimed] == [record.id for record in good]
        assert store.client.zscore(keys.failed, broken.id.split("/")[1]) is not None
        assert [(c.running, c.failed, c.ready) for c in store.counts()] == [(3, 1, 0)]


class TestLayoutOnFakeredis(LayoutChecks):
    @pytest.fixture
    def store(self) -> Iterator[RedisAdapter]:
        adapter = RedisAdapter(fake_redis(), prefix="qblayout")
        yield adapter
        adapter.close()


class TestLayoutOnRedis(LayoutChecks):
    @pytest.fixture
    def store(self, redis_url: str) -> Iterator[RedisAdapter]:
        with isolated_prefix(redis_url) as prefix:
            adapter = RedisAdapter.from_url(url_with(redis_url, prefix=prefix))
            yield adapter
            adapter.close()


def test_the_test_codec_packs_what_redis_packs(redis_url: str) -> None:
    """fakeredis runs tests/lua/cmsgpack.lua where Redis runs its own cmsgpack: both give the
    same bytes for every kind of value a record holds (floats aside: Redis packs some as
    float 32, a record never holds one)."""
    values = [
        ["Job", '{"name":"Job","args":["é"],"kwargs":{}}', 50, 1_714_000_000_123, -5, 0, 0],
        [False, True, None, "x" * 40, "y" * 300, "z" * 70_000, -(2**40), 2**40, -100, -40_000],
        ["w", 2**53, ["owner", 1_714_000_060_123], {"a": 1}, list(range(20))],
    ]
    script = "return cmsgpack.pack(cmsgpack.unpack(ARGV[1]), 7, -1, 'text', false)"
    real = redis.Redis.from_url(redis_url)
    try:
        for value in values:
            packed = msgpack.packb(value)
            assert real.eval(script, 0, packed) == fake_redis().eval(script, 0, packed)
    finally:
        real.close()
