"""Helpers shared by the Redis tests, and unit tests of the Redis store's pieces."""

from __future__ import annotations

import contextlib
import importlib.resources
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import fakeredis
import pytest

from queuebox.backends import from_url
from queuebox.backends.base import JobState
from queuebox.backends.redis import RedisAdapter
from queuebox.backends.redis_keys import QueueKeys, parse_job_id
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
    called = set(re.findall(r'\(\s*"([a-z]+)",\s*(?:self\._keys|job|job_id)', code))
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
