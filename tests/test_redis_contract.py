"""The adapter contract on the Redis store: a real server, and fakeredis with Lua."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import fakeredis
import pytest
from test_redis_support import (
    UNREACHABLE_URL,
    fake_async_redis,
    fake_redis,
    isolated_prefix,
    url_with,
)

from queuebox.backends.redis import RedisAdapter
from queuebox.testing import AdapterContract, AdapterFactory, UnreachableFactory


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    with isolated_prefix(redis_url) as prefix:
        yield prefix


class TestRedisContract(AdapterContract):
    @pytest.fixture
    def adapter_factory(self, redis_url: str, redis_prefix: str) -> AdapterFactory:
        url = url_with(redis_url, prefix=redis_prefix)
        return lambda: RedisAdapter.from_url(url)

    @pytest.fixture
    def unreachable_adapter_factory(self) -> UnreachableFactory:
        return lambda: RedisAdapter.from_url(UNREACHABLE_URL)


class TestFakeRedisContract(AdapterContract):
    """fakeredis runs the same Lua scripts in this process. Its data does not cross a fork,
    so these adapters declare ``multiprocess=False``, as the in-memory store does."""

    @pytest.fixture
    def adapter_factory(self) -> AdapterFactory:
        server = fakeredis.FakeServer()

        def make() -> RedisAdapter:
            adapter = RedisAdapter(
                fake_redis(server),
                prefix="qbfake",
                async_client=lambda: fake_async_redis(server),
            )
            adapter.capabilities = dataclasses.replace(adapter.capabilities, multiprocess=False)
            return adapter

        return make

    @pytest.fixture
    def unreachable_adapter_factory(self) -> UnreachableFactory:
        """A fakeredis server that refuses connections, as one that went away does."""
        server = fakeredis.FakeServer()
        server.connected = False
        return lambda: RedisAdapter(fake_redis(server), prefix="qbfake")
