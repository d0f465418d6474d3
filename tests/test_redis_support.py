"""Helpers shared by the Redis tests, and unit tests of the Redis store's pieces."""

from __future__ import annotations

import contextlib
import importlib.resources
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import fakeredis
import msgpack
import pytest

from queuebox.backends import from_url
from queuebox.backends.base import JobRecord, JobState
from queuebox.backends.redis import RedisAdapter
from queuebox.backends.redis_keys import QueueKeys, parse_job_id, wake_list
from queuebox.backends.redis_scripts import LIBRARY, SCRIPT_NAMES, load_scripts
from queuebox.errors import ConfigurationError, InvalidQueueName, StorageUnavailable
from queuebox.testing import new_job


def url_with(url: str, **params: str) -> str:
    """``url`` with query parameters added or replaced."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


@contextlib.contextmanager
def isolated_prefix(url: str) -> Iterator[str]:
    """A fresh random key prefix on the server at ``url``; every key under it is deleted after."""
    prefix = f"qbtest-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        adapter = RedisAdapter.from_url(url_with(url, prefix=prefix))
        try:
            adapter.purge()
            client = adapter._client
            # The prefix is ours (random hex), never user input.
            leftovers = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if leftovers:
                client.delete(*leftovers)
        finally:
            adapter.close()
        assert not leftovers, f"keys left behind after purge: {leftovers[:5]}"


# -- scripts ------------------------------------------------------------------------------------

LUA_DIR = Path(str(importlib.resources.files("queuebox.backends").joinpath("lua")))
SOURCES = Path(__file__).parent.parent / "queuebox" / "backends"


def test_every_script_used_exists_and_every_file_is_used() -> None:
    files = {path.name for path in LUA_DIR.glob("*.lua")}
    assert files == {f"{name}.lua" for name in SCRIPT_NAMES} | {LIBRARY}
    code = "".join(path.read_text() for path in SOURCES.glob("redis*.py"))
    called = set(re.findall(r'\(\s*"([a-z_]+)",\s*(?:self\._keys|job|job_id)', code))
    called |= set(re.findall(r'_owned_call\(\s*"([a-z]+)"', code))
    called |= set(re.findall(r'_by_id\(\s*"([a-z]+)"', code))
    assert called == set(SCRIPT_NAMES)
    scripts = load_scripts()
    assert set(scripts) == set(SCRIPT_NAMES)


@pytest.mark.parametrize("name", [*SCRIPT_NAMES, "lib"])
def test_each_script_opens_with_a_comment_naming_its_keys_and_argv(name: str) -> None:
    text = (LUA_DIR / f"{name}.lua").read_text()
    assert text.startswith(f"-- {name}"), "each Lua file opens with a comment naming it"
    header = text.split("\n\n", 1)[0] if name == "lib" else text[: text.find("\nlocal")]
    assert "KEYS" in header
    if name != "lib":
        assert "ARGV" in header


# -- ids, keys and URLs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "bogus",
        "",
        "1' OR '1'='1",
        "999999999",
        "-1",
        "q/0",
        "q/01",
        "q/-1",
        "/1",
        "q/1/",
        "q /1",
        "a{b}/1",
        "q/" + "9" * 30,
        None,
        42,
        "x" * 65 + "/1",
    ],
)
def test_bad_ids_parse_to_none(value: object) -> None:
    assert parse_job_id(value) is None


def test_good_ids() -> None:
    assert parse_job_id("email/42") == ("email", 42)
    assert parse_job_id("reports.daily-v2_x/1") == ("reports.daily-v2_x", 1)


def test_queue_keys_share_one_hash_tag() -> None:
    keys = QueueKeys.of("app", "email")
    assert all(key.startswith("app:{email}:") for key in keys)
    with pytest.raises(InvalidQueueName):
        QueueKeys.of("app", "a}b")
    with pytest.raises(InvalidQueueName):
        QueueKeys.of("app", "*")


def test_bad_prefix_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        RedisAdapter.from_url("redis://127.0.0.1:6379/0?prefix=a{b}")


def test_url_options_are_split_between_adapter_and_client() -> None:
    adapter = from_url("redis://127.0.0.1:6399/3?prefix=myapp&socket_timeout=2&registry_ttl=0.5")
    assert isinstance(adapter, RedisAdapter)
    assert adapter._prefix == "myapp" and adapter._registry_ttl == 0.5
    kwargs = adapter._client.connection_pool.connection_kwargs
    assert kwargs["db"] == 3 and kwargs["socket_timeout"] == 2.0
    adapter.close()
    unix = from_url("unix:///tmp/queuebox-test.sock?db=2&prefix=u")
    assert isinstance(unix, RedisAdapter)
    assert unix._client.connection_pool.connection_kwargs["path"] == "/tmp/queuebox-test.sock"
    unix.close()


def test_connection_loss_names_the_url_without_its_password() -> None:
    adapter = RedisAdapter.from_url("redis://:s3cret-pw@127.0.0.1:1/0?socket_connect_timeout=1")
    with pytest.raises(StorageUnavailable) as caught:
        adapter.claim("w1", ["default"], limit=1, lease=30)
    message = str(caught.value)
    assert "s3cret-pw" not in message and "redis://:***@127.0.0.1:1/0" in message
    with pytest.raises(StorageUnavailable):
        adapter.wait_for_work(["default"], 0.1)
    with pytest.raises(StorageUnavailable):
        adapter.now()
    adapter.close()


# -- the Lua msgpack codec and record layout, on fakeredis (Lua 5.4) and real Redis (Lua 5.1) --


@pytest.fixture(params=["fakeredis", "redis"])
def any_adapter(request: pytest.FixtureRequest) -> Iterator[RedisAdapter]:
    if request.param == "fakeredis":
        adapter = RedisAdapter(fakeredis.FakeRedis(), prefix="qbcodec")
        yield adapter
        adapter.close()
        return
    url = request.getfixturevalue("redis_url")
    with isolated_prefix(url) as prefix:
        adapter = RedisAdapter.from_url(url_with(url, prefix=prefix))
        yield adapter
        adapter.close()


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
    any_adapter: RedisAdapter, offset: timedelta, size: int
) -> None:
    now = any_adapter.now()
    handler_arg = "é" * (size // 2) + "x" * (size % 2)
    record = any_adapter.schedule_one(new_job("codec", 7, args=[handler_arg], run_at=now + offset))
    assert any_adapter.get(record.id) == record
    assert abs((record.run_at - (now + offset)).total_seconds()) < 0.002
    if record.state is JobState.READY:
        claimed = any_adapter.claim("w" * size, ["codec"], limit=1, lease=30)[0]
        assert claimed.handler == record.handler and claimed.locked_by == "w" * size
        error = "E" * size
        assert any_adapter.fail(claimed.id, claimed.lock_token or "", error=error)
        failed = any_adapter.get(record.id)
        assert failed is not None and failed.last_error == error
    assert any_adapter.delete(record.id)
    assert any_adapter.counts() == []


# -- unique keys and recurring ticks: what the scripts keep in the unique and ticks hashes ------


def _packed_fields(adapter: RedisAdapter, job: str) -> list[object]:
    parsed = parse_job_id(job)
    assert parsed is not None
    raw = adapter._client.hget(QueueKeys.of(adapter._prefix, parsed[0]).jobs, str(parsed[1]))
    return list(msgpack.unpackb(raw, raw=False))


def test_records_written_before_the_unique_field_still_decode(any_adapter: RedisAdapter) -> None:
    record = any_adapter.schedule_one(new_job("old"))
    keys = QueueKeys.of(any_adapter._prefix, "old")
    fields = _packed_fields(any_adapter, record.id)
    assert len(fields) == 7, "a waiting job without a unique key packs 7 fields, as before"
    old = [*fields, None, None, None, None, "an old error", None, None]  # the 14-field layout
    any_adapter._client.hset(keys.jobs, record.id.split("/")[1], msgpack.packb(old))
    again = any_adapter.get(record.id)
    assert again is not None and again.unique_key is None and again.last_error == "an old error"
    job = any_adapter.claim("w1", ["old"], limit=1, lease=30)[0]
    assert job.id == record.id and job.unique_key is None
    assert any_adapter.fail(job.id, job.lock_token or "", error="E")
    assert len(_packed_fields(any_adapter, job.id)) == 13  # no trailing unique_key field


def test_unique_hash_follows_the_holder_through_reclaim_and_completion(
    any_adapter: RedisAdapter,
) -> None:
    client = any_adapter._client
    keys = QueueKeys.of(any_adapter._prefix, "uq")
    record = any_adapter.schedule_one(new_job("uq", unique_key="k"))
    number = record.id.split("/")[1]
    assert client.hgetall(keys.unique) == {b"k": number.encode()}
    assert _packed_fields(any_adapter, record.id)[14] == "k"
    first = any_adapter.claim("w1", ["uq"], limit=1, lease=0.001)[0]
    time.sleep(0.01)
    second = any_adapter.claim("w2", ["uq"], limit=1, lease=30)[0]  # the lock expired: reclaim
    assert second.id == record.id and second.unique_key == "k"
    assert any_adapter.schedule_one(new_job("uq", unique_key="k")).id == record.id
    assert not any_adapter.complete(first.id, first.lock_token or "")  # lost lock: key stays
    assert client.hgetall(keys.unique) == {b"k": number.encode()}
    assert any_adapter.complete(second.id, second.lock_token or "", keep=True)
    assert client.exists(keys.unique) == 0
    kept = any_adapter.get(record.id)
    assert kept is not None and kept.state is JobState.COMPLETED and kept.unique_key is None
    assert len(_packed_fields(any_adapter, record.id)) == 14  # the key left the record too
    assert any_adapter.retry(record.id)  # a retried job does not take the key back
    assert client.exists(keys.unique) == 0
    assert any_adapter.schedule_one(new_job("uq", unique_key="k")).id != record.id


def test_a_stale_unique_entry_does_not_block_the_key(any_adapter: RedisAdapter) -> None:
    client = any_adapter._client
    keys = QueueKeys.of(any_adapter._prefix, "stale")
    failed = any_adapter.schedule_one(new_job("stale"))
    job = any_adapter.claim("w1", ["stale"], limit=1, lease=30)[0]
    assert any_adapter.fail(job.id, job.lock_token or "", error="E")
    client.hset(keys.unique, mapping={"gone": "999", "done": failed.id.split("/")[1]})
    for key in ("gone", "done"):  # a missing job, a failed job: neither holds the key
        stored = any_adapter.schedule_one(new_job("stale", unique_key=key))
        assert stored.id != failed.id and stored.unique_key == key
        assert client.hget(keys.unique, key) == stored.id.split("/")[1].encode()
    assert any_adapter.delete(failed.id)  # a job that does not hold an entry leaves it alone
    assert client.hlen(keys.unique) == 2
    assert any_adapter.clear(["stale"]) == 2
    assert client.exists(keys.unique) == 0


def test_ticks_live_beside_the_queue_and_survive_clear(any_adapter: RedisAdapter) -> None:
    client = any_adapter._client
    tick = any_adapter.now().replace(microsecond=0)
    assert any_adapter.schedule_tick("Nightly", tick, new_job("cron-a"), store=False) is None
    keys = QueueKeys.of(any_adapter._prefix, "cron-a")
    assert client.hgetall(keys.ticks) == {b"Nightly": str(int(tick.timestamp() * 1000)).encode()}
    # A fresh adapter finds the tick: recording one registers the queue even without a job.
    fresh = RedisAdapter(client, prefix=any_adapter._prefix)
    assert fresh.recurring_ticks() == {"Nightly": tick}
    later = tick + timedelta(minutes=1)
    stored = fresh.schedule_tick("Nightly", later, new_job("cron-b", run_at=later))
    assert stored is not None and stored.queue == "cron-b" and fresh.get(stored.id) == stored
    assert any_adapter.recurring_ticks() == {"Nightly": later}, "a moved job: its latest tick"
    assert any_adapter.clear() == 1
    assert any_adapter.recurring_ticks() == {"Nightly": later}
    assert any_adapter.schedule_tick("Nightly", later, new_job("cron-b")) is None


# -- batch acknowledgements, batch claims, client-packed enqueues, claim with the wake-up -------


def test_complete_many_is_fenced_job_by_job(any_adapter: RedisAdapter) -> None:
    client = any_adapter._client
    keys = QueueKeys.of(any_adapter._prefix, "acks")
    stored = any_adapter.schedule(
        [new_job("acks", unique_key=f"u{i}" if i % 2 else None) for i in range(6)]
    )
    claimed = any_adapter.claim("w1", ["acks"], limit=6, lease=30)
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
    assert any_adapter.complete_many(acks) == applied
    assert any_adapter.get(first.id) is None and any_adapter.get(rest[0].id) is None
    held = any_adapter.get(second.id)
    assert held is not None and held.state is JobState.RUNNING
    # the unique keys of the completed jobs are free again, the running job keeps its own
    assert client.hgetall(keys.unique) == {
        b"u1": second.id.split("/")[1].encode(),
        b"u5": rest[3].id.split("/")[1].encode(),
    }
    assert client.zcard(keys.running) == 3
    kept = [(second.id, second.lock_token or ""), (rest[3].id, rest[3].lock_token or "")]
    assert any_adapter.complete_many(kept, keep=True) == [True, True]
    assert client.exists(keys.unique) == 0
    done = any_adapter.get(rest[3].id)
    assert done is not None and done.state is JobState.COMPLETED and done.unique_key is None
    assert any_adapter.complete_many(kept, keep=True) == [False, False]
    assert [(c.running, c.ready, c.completed) for c in any_adapter.counts()] == [(1, 0, 2)]


def test_a_batch_claim_takes_the_best_jobs_across_buckets_in_order(
    any_adapter: RedisAdapter,
) -> None:
    now = any_adapter.now()
    jobs = [
        new_job("order", priority=(7, 3, 3, 9)[i % 4], run_at=now - timedelta(seconds=i % 5))
        for i in range(300)  # about five buckets of 64 per priority
    ]
    stored = any_adapter.schedule(jobs)
    any_adapter.schedule([new_job("order", delay=600)])  # scheduled: never claimed now
    expected = sorted(stored, key=lambda r: (r.priority, r.run_at, int(r.id.split("/")[1])))
    claimed = any_adapter.claim("w1", ["order"], limit=130, lease=30)
    claimed += any_adapter.claim("w1", ["order"], limit=1, lease=30)
    claimed += any_adapter.claim("w1", ["order"], limit=500, lease=30)
    assert [job.id for job in claimed] == [record.id for record in expected]
    assert all(job.attempts == 1 and job.locked_by == "w1" for job in claimed)
    assert any_adapter.claim("w1", ["order"], limit=10, lease=30) == []
    assert [(c.running, c.scheduled) for c in any_adapter.counts()] == [(300, 1)]


def test_enqueued_records_are_packed_as_the_scripts_pack_them(any_adapter: RedisAdapter) -> None:
    plain, unique = any_adapter.schedule(
        [new_job("packed", 5, args=["é" * 40]), new_job("packed", 5, unique_key="k" * 40)]
    )
    for record, fields in ((plain, 7), (unique, 15)):
        packed = _packed_fields(any_adapter, record.id)
        created = int(record.created_at.timestamp() * 1000)
        assert packed[:7] == [record.name, record.handler, 5, created, 0, 0, 0]
        assert len(packed) == fields and packed[7:14] == [None] * (fields - 8 if fields > 7 else 0)
    assert _packed_fields(any_adapter, unique.id)[14] == "k" * 40
    job = any_adapter.claim("w1", ["packed"], limit=1, lease=30)[0]
    assert any_adapter.extend(job.id, job.lock_token or "", lease=30)  # rewritten by save_job
    again = any_adapter.claim("w1", ["packed"], limit=1, lease=30)[0]
    assert again.id == unique.id and again.unique_key == "k" * 40


def test_wait_and_claim_takes_jobs_with_the_wake_up(any_adapter: RedisAdapter) -> None:
    client = any_adapter._client
    wake = wake_list(any_adapter._prefix, "wq")
    started = time.monotonic()
    assert any_adapter.wait_and_claim("w1", "wq", limit=5, lease=30, timeout=0.2) == []
    assert 0.15 < time.monotonic() - started < 2
    got: list[list[JobRecord]] = []
    thread = threading.Thread(
        target=lambda: got.append(
            any_adapter.wait_and_claim("w1", "wq", limit=5, lease=30, timeout=5)
        )
    )
    thread.start()
    time.sleep(0.1)
    enqueued = time.monotonic()
    stored = any_adapter.schedule([new_job("wq", args=[i]) for i in range(8)])
    thread.join(5)
    assert time.monotonic() - enqueued < 1
    claimed = got[0]
    assert [job.id for job in claimed] == [record.id for record in stored[:5]]
    assert client.llen(wake) >= 1, "jobs are left: a token stays for the next idle worker"
    rest = any_adapter.wait_and_claim("w2", "wq", limit=5, lease=30, timeout=5)
    assert len(rest) == 3 and client.exists(wake) == 0, "an emptied queue drops its tokens"
    later = any_adapter.schedule_one(new_job("wq", delay=0.3))
    started = time.monotonic()
    woke = any_adapter.wait_and_claim("w1", "wq", limit=5, lease=30, timeout=5)
    assert [job.id for job in woke] == [later.id]
    assert 0.2 < time.monotonic() - started < 2, "woken at run_at, not at the timeout"
    assert any_adapter.release(woke[0].id, woke[0].lock_token or "")  # a release wakes too
    assert client.llen(wake) == 1
    assert any_adapter.clear(["wq"]) == 9 and client.exists(wake) == 0


def test_wake_tokens_are_bounded(any_adapter: RedisAdapter) -> None:
    wake = wake_list(any_adapter._prefix, "bounded")
    for _ in range(3):
        any_adapter.schedule([new_job("bounded") for _ in range(40)])
    assert any_adapter._client.llen(wake) == 16
    any_adapter.clear(["bounded"])


def test_complete_and_claim_acknowledges_then_claims(any_adapter: RedisAdapter) -> None:
    stored = any_adapter.schedule([new_job("cc", args=[i]) for i in range(5)])
    first = any_adapter.claim("w1", ["cc"], limit=2, lease=30)
    acks = [(first[0].id, first[0].lock_token or ""), (first[1].id, "wrong")]
    results, claimed = any_adapter.complete_and_claim(
        acks, worker_id="w1", queue="cc", limit=10, lease=30
    )
    assert results == [True, False]
    assert [job.id for job in claimed] == [record.id for record in stored[2:]]
    assert any_adapter.get(first[0].id) is None
    still = any_adapter.get(first[1].id)
    assert still is not None and still.state is JobState.RUNNING
    results, claimed = any_adapter.complete_and_claim(
        [(job.id, job.lock_token or "") for job in claimed],
        keep=True,
        worker_id="w1",
        queue="cc",
        limit=10,
        lease=30,
    )
    assert results == [True] * 3 and claimed == []
    assert [(c.running, c.completed) for c in any_adapter.counts()] == [(1, 3)]


def test_an_unreadable_record_is_failed_and_the_rest_of_the_batch_claimed(
    any_adapter: RedisAdapter,
) -> None:
    broken, *good = any_adapter.schedule(
        [new_job("bad", priority=1), *(new_job("bad", args=[i]) for i in range(3))]
    )
    keys = QueueKeys.of(any_adapter._prefix, "bad")
    any_adapter._client.hset(keys.jobs, broken.id.split("/")[1], b"\xc1 not msgpack")
    claimed = any_adapter.claim("w1", ["bad"], limit=10, lease=30)
    assert [job.id for job in claimed] == [record.id for record in good]
    assert any_adapter._client.zscore(keys.failed, broken.id.split("/")[1]) is not None
    assert [(c.running, c.failed, c.ready) for c in any_adapter.counts()] == [(3, 1, 0)]
