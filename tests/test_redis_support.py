"""Helpers the Redis tests share (this module holds no tests): fakeredis with the ``cmsgpack``
module that real Redis has built in, a key prefix of one's own on a real server, and a look
at the bytes a script stored."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import fakeredis
import msgpack

from queuebox.backends.redis import RedisAdapter
from queuebox.backends.redis_keys import QueueKeys, parse_job_id

__all__ = [
    "TEST_LUA",
    "UNREACHABLE_URL",
    "fake_async_redis",
    "fake_redis",
    "in_database",
    "isolated_prefix",
    "packed_fields",
    "url_with",
]

#: Where ``cmsgpack.lua`` lives: fakeredis's Lua has no cmsgpack, Redis's has it built in.
TEST_LUA = Path(__file__).parent / "lua"
#: A Redis URL nothing listens on (port 1), with a short connect timeout.
UNREACHABLE_URL = "redis://:s3cret-pw@127.0.0.1:1/0?socket_connect_timeout=1"


def _lua_path() -> None:
    """Let Lua's ``require`` find ``tests/lua/cmsgpack.lua``: Lua reads ``LUA_PATH`` when
    fakeredis builds a server's interpreter (at the server's first script)."""
    path = f"{TEST_LUA}/?.lua"
    current = os.environ.get("LUA_PATH", ";;")
    if path not in current.split(";"):
        os.environ["LUA_PATH"] = f"{path};{current}"


def fake_redis(server: fakeredis.FakeServer | None = None, **options: Any) -> fakeredis.FakeRedis:
    """A fakeredis client whose Lua has the ``cmsgpack`` module the store's scripts use."""
    _lua_path()
    return fakeredis.FakeRedis(server=server, lua_modules={"cmsgpack"}, **options)


def fake_async_redis(server: fakeredis.FakeServer, **options: Any) -> fakeredis.FakeAsyncRedis:
    """The asyncio client of ``server``, with ``cmsgpack`` as ``fake_redis`` has it."""
    _lua_path()
    return fakeredis.FakeAsyncRedis(server=server, lua_modules={"cmsgpack"}, **options)


def in_database(url: str, database: int) -> str:
    """``url`` (``redis://``) naming database ``database`` instead of its own."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


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
            client = adapter.client
            # The prefix is ours (random hex), never user input.
            leftovers = list(client.scan_iter(match=f"{prefix}:*", count=1000))
            if leftovers:
                client.delete(*leftovers)
        finally:
            adapter.close()
        assert not leftovers, f"keys left behind after purge: {leftovers[:5]}"


def packed_fields(adapter: RedisAdapter, job: str) -> list[object]:
    """The values of a job's stored record, as msgpack unpacks them."""
    parsed = parse_job_id(job)
    assert parsed is not None
    raw = adapter.client.hget(QueueKeys.of(adapter.prefix, parsed[0]).jobs, str(parsed[1]))
    return list(msgpack.unpackb(raw, raw=False))
