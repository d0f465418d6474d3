"""The Redis store's request path: scripts that carry only the library code they reach, and
script calls written straight on a pooled connection, with the client's own path as the
fallback for what that cannot serve."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio
from test_redis_support import fake_async_redis, fake_redis, isolated_prefix, url_with

from queuebox.backends import redis_scripts
from queuebox.backends.redis import RedisAdapter
from queuebox.backends.redis_functions import build_library
from queuebox.backends.redis_prelude import blocks, needed_prelude
from queuebox.backends.redis_scripts import LIBRARIES, _read, load_scripts
from queuebox.backends.redis_wire import AsyncDirectCalls, DirectCalls, Unreachable
from queuebox.testing import new_job

LIBRARY = "\n".join(_read(name) for name in LIBRARIES)

# -- the trimmed prelude --------------------------------------------------------------------------


def test_a_script_keeps_the_blocks_it_reaches_through_others_and_drops_the_rest() -> None:
    library = (
        "-- header\n"
        "local A = 1\n"
        "local function uses_a() return A end\n"
        "-- a comment between\n"
        "local function unused() return 2 end\n"
        "local function top() return uses_a() end\n"
    )
    kept = needed_prelude(library, "return top()")
    assert kept.startswith("-- header\n")
    assert "local A = 1" in kept and "uses_a" in kept and "local function top" in kept
    assert "unused" not in kept


def test_a_library_statement_other_than_local_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot read"):
        blocks("local A = 1\nlocal function f() end\nlocal\n")
    with pytest.raises(ValueError, match="cannot read"):
        blocks("local A = 1\nlocal = 2\n")


def test_the_libraries_split_into_blocks_that_each_define_a_name() -> None:
    header, found = blocks(LIBRARY)
    assert header.lstrip().startswith("-- lib.lua")
    assert all(block.defines for block in found)
    assert "".join(block.text for block in found) == LIBRARY[len(header) :]


def test_the_enqueue_script_leaves_out_the_claim_code_and_the_claim_keeps_it() -> None:
    scripts = load_scripts()
    assert "local function promote_and_reclaim" not in scripts["enqueue"].source
    assert "local function lock_record" not in scripts["enqueue"].source
    assert "local function insert" in scripts["enqueue"].source
    assert "local function promote_and_reclaim" in scripts["claim"].source
    assert len(scripts["enqueue"].source) < len(LIBRARY)


# -- calls written straight -----------------------------------------------------------------------


@pytest.fixture
def adapter(redis_url: str) -> Iterator[RedisAdapter]:
    with isolated_prefix(redis_url) as prefix:
        store = RedisAdapter.from_url(url_with(redis_url, prefix=prefix))
        try:
            yield store
        finally:
            store.close()


def test_one_enqueue_skips_the_clients_command_path(
    adapter: RedisAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter.schedule([new_job("q", 0)])  # registers the queue

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the enqueue went through redis-py's execute_command")

    monkeypatch.setattr(adapter.client, "execute_command", refused)
    record = adapter.schedule([new_job("q", 1)])[0]
    assert record.id == "q/2" and record.run_at == record.created_at
    monkeypatch.undo()
    assert adapter.get("q/2") == record


def test_a_connection_that_fails_falls_back_to_the_clients_own_retries(
    adapter: RedisAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter.schedule([new_job("q", 0)])  # the server said whether it has Functions
    pool: Any = adapter.client.connection_pool
    original = pool.get_connection
    failures = [redis.ConnectionError("refused once")]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return original(*args, **kwargs)

    monkeypatch.setattr(pool, "get_connection", flaky)
    calls: list[str] = []
    execute = adapter.client.execute_command

    def counted(*args: Any, **kwargs: Any) -> Any:
        if args[0] in ("FCALL", "EVALSHA"):
            calls.append(args[1])
        return execute(*args, **kwargs)

    monkeypatch.setattr(adapter.client, "execute_command", counted)
    record = adapter.schedule([new_job("q", 1)])[0]
    assert calls == [adapter._scripts.head("enqueue")[1]]  # the one fallback
    assert adapter.get(record.id) == record
    adapter.schedule([new_job("q", 2)])
    assert len(calls) == 1  # the next call is straight again


def test_a_flushed_script_cache_is_reloaded_once() -> None:
    client = fake_redis()
    adapter = RedisAdapter(client, prefix="wire")
    adapter.schedule([new_job("q", 0)])
    client.script_flush()
    record = adapter.schedule([new_job("q", 1)])[0]
    assert adapter.get(record.id) == record


def test_arguments_the_wire_cannot_write_are_left_to_redis_py() -> None:
    calls = DirectCalls.of(fake_redis())
    assert calls is not None
    with pytest.raises(Unreachable):
        calls.call(("EVALSHA", "0" * 40), ["k"], [True])


def test_a_client_holding_one_connection_of_its_own_is_not_called_straight() -> None:
    client = fake_redis(single_connection_client=True)
    assert DirectCalls.of(client) is None
    adapter = RedisAdapter(client, prefix="wire")
    assert adapter.schedule([new_job("q", 1)])[0].id == "q/1"


def test_an_error_reply_comes_back_as_redis_py_raises_it_and_the_connection_is_kept(
    adapter: RedisAdapter,
) -> None:
    calls = DirectCalls.of(adapter.client)
    assert calls is not None
    with pytest.raises(redis.exceptions.NoScriptError):
        calls.call(("EVALSHA", "0" * 40), ["k"], ["a"])
    pool: Any = adapter.client.connection_pool
    assert len(pool._available_connections) == 1  # released, not dropped


def test_the_asyncio_client_is_called_straight_too(redis_url: str) -> None:
    async def run() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            calls = AsyncDirectCalls.of(client)
            assert calls is not None
            sha = await client.script_load("return {KEYS[1], ARGV[1], ARGV[2]}")
            assert await calls.acall(("EVALSHA", sha), ["k"], ["a", 7]) == [b"k", b"a", b"7"]
            with pytest.raises(redis.exceptions.NoScriptError):
                await calls.acall(("EVALSHA", "0" * 40), ["k"], ["a"])
            assert await calls.acall(("EVALSHA", sha), ["k"], [b"b", ""]) == [b"k", b"b", b""]
        finally:
            await client.aclose()

    asyncio.run(run())


def test_one_async_enqueue_reloads_a_flushed_script_cache() -> None:
    server = fakeredis.FakeServer()
    client = fake_redis(server)
    store = RedisAdapter(client, prefix="wire", async_client=lambda: fake_async_redis(server))

    async def run() -> list[str]:
        first = (await store.aschedule([new_job("q", 0)]))[0]
        client.script_flush()
        second = (await store.aschedule([new_job("q", 1)]))[0]
        await store.aclose()
        return [first.id, second.id]

    assert asyncio.run(run()) == ["q/1", "q/2"]
    assert store.get("q/2") is not None


# -- Redis Functions ------------------------------------------------------------------------------


def test_a_server_with_functions_runs_the_queue_scripts_as_one_library(
    adapter: RedisAdapter,
) -> None:
    record = adapter.schedule([new_job("q", 1)])[0]
    scripts = adapter._scripts
    assert scripts.head("enqueue") == ("FCALL", scripts.library.functions["enqueue"])
    assert scripts.head("worker_beat")[0] == "EVALSHA"  # stands alone: no library
    listed = adapter.client.function_list(library=scripts.library.name)
    assert len(listed) == 1 and scripts.library.name.encode() in listed[0]
    assert adapter.claim("w", ["q"], lease=30)[0].id == record.id


def test_a_deleted_library_is_loaded_again_and_the_refused_calls_repeated(
    adapter: RedisAdapter,
) -> None:
    adapter.schedule([new_job("q", 0), new_job("q", 1)])
    library = adapter._scripts.library.name
    adapter.client.function_delete(library)
    assert adapter.schedule([new_job("q", 2)])[0].id == "q/3"  # one call
    adapter.client.function_delete(library)
    assert [c.ready for c in adapter.counts()] == [3]  # pipelined
    adapter.client.function_delete(library)
    assert len(adapter.claim("w", ["q"], limit=3, lease=30)) == 3


def test_a_server_that_cannot_run_the_library_gets_evalsha() -> None:
    adapter = RedisAdapter(fake_redis(), prefix="wire")  # its functions have no cmsgpack
    assert adapter.schedule([new_job("q", 1)])[0].id == "q/1"
    assert adapter._scripts.functions is False
    assert adapter._scripts.head("enqueue")[0] == "EVALSHA"


def test_the_library_is_named_after_its_whole_source() -> None:
    first = build_library("local A = 1", {"x": "return A"})
    assert first == build_library("local A = 1", {"x": "return A"})
    assert first.name != build_library("local A = 2", {"x": "return A"}).name
    assert first.name != build_library("local A = 1", {"x": "return 2"}).name
    assert first.source.startswith(f"#!lua name={first.name}\n")
    assert f"'{first.functions['x']}'" in first.source and first.probe in first.source


def test_a_server_that_stops_taking_the_library_gets_the_scripts_instead(
    adapter: RedisAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter.schedule([new_job("q", 0)])
    assert adapter._scripts.functions is True
    adapter.client.function_delete(adapter._scripts.library.name)
    monkeypatch.setattr(redis_scripts, "load_library", lambda client, library: False)
    assert adapter.schedule([new_job("q", 1)])[0].id == "q/2"  # by EVALSHA, loaded now
    assert adapter._scripts.functions is False
    assert adapter._scripts.head("claim")[0] == "EVALSHA"
    assert len(adapter.claim("w", ["q"], limit=2, lease=30)) == 2
