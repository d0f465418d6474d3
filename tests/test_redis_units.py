"""Unit tests of the Redis store's pieces that need no server: its script files, job ids,
key names, URLs, and the test side's cmsgpack for fakeredis."""

from __future__ import annotations

import base64
import importlib.resources
import re
from pathlib import Path

import msgpack
import pytest
from test_redis_support import UNREACHABLE_URL, fake_redis

from queuebox.backends import from_url
from queuebox.backends.redis import RedisAdapter
from queuebox.backends.redis_keys import QueueKeys, parse_job_id
from queuebox.backends.redis_scripts import LIBRARIES, SCRIPT_NAMES, load_scripts
from queuebox.backends.redis_search import _read_cursor
from queuebox.errors import (
    ConfigurationError,
    InvalidQueueName,
    StorageUnavailable,
    ValidationError,
)

# -- scripts ------------------------------------------------------------------------------------

LUA_DIR = Path(str(importlib.resources.files("queuebox.backends").joinpath("lua")))
SOURCES = Path(__file__).parent.parent / "queuebox" / "backends"


def test_every_script_used_exists_and_every_file_is_used() -> None:
    files = {path.name for path in LUA_DIR.glob("*.lua")}
    assert files == {f"{name}.lua" for name in SCRIPT_NAMES} | set(LIBRARIES)
    code = "".join(path.read_text() for path in SOURCES.glob("redis*.py"))
    called = set(re.findall(r'\(\s*"([a-z_]+)",\s*(?:self\._keys|keys|queue_keys|job)\b', code))
    called |= set(re.findall(r'(?:_owned_call|_by_id|lock_calls)\(\s*"([a-z_]+)"', code))
    assert called == set(SCRIPT_NAMES)
    scripts = load_scripts()
    assert set(scripts) == set(SCRIPT_NAMES)


@pytest.mark.parametrize("name", [*SCRIPT_NAMES, *(lib[:-4] for lib in LIBRARIES)])
def test_each_script_opens_with_a_comment_naming_its_keys_and_argv(name: str) -> None:
    text = (LUA_DIR / f"{name}.lua").read_text()
    assert text.startswith(f"-- {name}"), "each Lua file opens with a comment naming it"
    header = text.split("\n\n", 1)[0] if name.startswith("lib") else text[: text.find("\nlocal")]
    assert "KEYS" in header
    if not name.startswith("lib"):
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


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64!",
        base64.urlsafe_b64encode(b"[1]").decode(),
        base64.urlsafe_b64encode(b'{"a{b": 1}').decode(),
        # Deeply nested JSON: json raised RecursionError, which escaped search_jobs.
        base64.urlsafe_b64encode(b"[" * 5000).decode(),
    ],
)
def test_a_forged_search_cursor_is_a_validation_error(cursor: str) -> None:
    with pytest.raises(ValidationError, match="is not one this store's search_jobs returned"):
        _read_cursor(cursor, None)


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
    assert adapter.prefix == "myapp" and adapter.registry_ttl == 0.5
    kwargs = adapter.client.connection_pool.connection_kwargs
    assert kwargs["db"] == 3 and kwargs["socket_timeout"] == 2.0
    adapter.close()
    unix = from_url("unix:///tmp/queuebox-test.sock?db=2&prefix=u")
    assert isinstance(unix, RedisAdapter)
    assert unix.client.connection_pool.connection_kwargs["path"] == "/tmp/queuebox-test.sock"
    unix.close()


def test_connection_loss_names_the_url_without_its_password() -> None:
    adapter = RedisAdapter.from_url(UNREACHABLE_URL)
    with pytest.raises(StorageUnavailable) as caught:
        adapter.claim("w1", ["default"], limit=1, lease=30)
    message = str(caught.value)
    assert "s3cret-pw" not in message and "redis://:***@127.0.0.1:1/0" in message
    with pytest.raises(StorageUnavailable):
        adapter.wait_for_work(["default"], 0.1)
    with pytest.raises(StorageUnavailable):
        adapter.now()
    adapter.close()


# -- the test side's cmsgpack (tests/lua/cmsgpack.lua), which fakeredis's Lua lacks -----------

#: Values a record can hold, and the other msgpack types, as cmsgpack reads and packs them
#: again: (value, what comes back). A nil ends a Lua array, as in Redis.
CODEC_VALUES: list[tuple[object, object]] = [
    *((n, n) for n in (0, 1, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**53)),
    *((n, n) for n in (-1, -32, -33, -128, -129, -32_768, -32_769, -(2**31), -(2**31) - 1)),
    (1_714_000_000_123, 1_714_000_000_123),
    (-62_135_596_800_000, -62_135_596_800_000),
    (1.5, 1.5),
    (-0.25, -0.25),
    (1e300, 1e300),
    (True, True),
    (False, False),
    ("", ""),
    ("x" * 31, "x" * 31),
    ("é" * 16, "é" * 16),
    ("y" * 255, "y" * 255),
    ("z" * 65_536, "z" * 65_536),
    ([], []),
    ([1, "two", False, [3.5, None]], [1, "two", False, [3.5]]),
    ({"a": 1}, {"a": 1}),
]

#: Unpacks ARGV[1] and packs it again; packs ARGV[2], a plain string.
ROUND_TRIP = "return {cmsgpack.pack(cmsgpack.unpack(ARGV[1])), cmsgpack.pack(ARGV[2])}"


@pytest.mark.parametrize(("value", "expected"), CODEC_VALUES, ids=lambda v: repr(v)[:20])
def test_the_test_codec_reads_and_writes_msgpack(value: object, expected: object) -> None:
    client = fake_redis()
    repacked, text = client.eval(ROUND_TRIP, 0, msgpack.packb(value), "plain text")
    assert msgpack.unpackb(repacked, raw=False) == expected
    assert msgpack.unpackb(text, raw=False) == "plain text"


@pytest.mark.parametrize(
    "garbage", [b"\xc1", b"\x93\x01", b"\xd9\x05ab", b"\xcd\x01", b"\xc4\x01a", b"\xd4\x01a"]
)
def test_the_test_codec_refuses_what_is_not_msgpack(garbage: bytes) -> None:
    client = fake_redis()
    script = "local ok = pcall(cmsgpack.unpack, ARGV[1]) return ok and 1 or 0"
    assert client.eval(script, 0, garbage) == 0


# -- URLs that cannot work are refused when the adapter is built, saying why -------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://h/abc", "'abc' is not a database number"),
        ("redis://h/-1", "'-1' is not a database number"),
        ("redis://h/99999999999", "there is no database 99999999999"),
        ("redis://h/1?db=2", "name two databases"),
        ("unix:///tmp/r.sock?db=x", "'x' is not a database number"),
        ("redis+cluster://h:7000/1", "database 0 only"),
        ("redis://h:99999/0", "the port is a number from 1 to 65535"),
        ("redis://h:abc/0", "the port is a number from 1 to 65535"),
        ("redis://h:0/0", "not 0"),
        ("http://h/0", "the scheme must be one of"),
        ("redis://h/0?socket_timeout=abc", "socket_timeout must be a number of seconds"),
        ("redis://h/0?socket_timeout=-1", "socket_timeout must be a number of seconds"),
        ("redis://h/0?socket_timeout=inf", "socket_timeout must be a number of seconds"),
        ("redis://h/0?max_connections=0", "max_connections must be a whole number"),
        ("redis://h/0?foo=bar", "redis-py does not take the option 'foo'"),
        ("redis://h/0?ssl_cert_reqs=none", "TLS options need rediss://"),
        ("redis://h/0?decode_responses=true", "decode_responses cannot be on"),
        ("redis://h/0?prefix=a{b}", "invalid Redis key prefix"),
        ("redis://h/0?registry_ttl=-1", "registry_ttl must be a number of seconds"),
        ("redis://h/0?registry_ttl=soon", "registry_ttl must be a number of seconds"),
        ("redis://h/0?db=1&db=2", "given twice"),
    ],
)
@pytest.mark.parametrize("secret", ["userinfo", "query"])
def test_a_bad_url_is_a_configuration_error_without_its_password(
    url: str, says: str, secret: str
) -> None:
    if secret == "userinfo":
        url = url.replace("://", "://:s3cret-pw@", 1)
    else:
        url += ("&" if "?" in url else "?") + "password=s3cret-pw"
    with pytest.raises(ConfigurationError) as caught:
        RedisAdapter.from_url(url)
    message = str(caught.value)
    assert says in message and "bad Redis URL" in message
    assert "s3cret-pw" not in message and "***" in message


def test_the_repr_names_the_server_and_prefix_without_the_password() -> None:
    # It was object.__repr__, which `queuebox status` printed for a store configured in code.
    adapter = RedisAdapter.from_url("redis://:s3cret-pw@h:6380/2?prefix=shop")
    assert repr(adapter) == "RedisAdapter('redis://:***@h:6380/2?prefix=shop', prefix='shop')"
    adapter.close()


def test_good_urls_are_taken() -> None:
    for url in (
        "redis://h",
        "redis://h/",
        "redis://h:6380/15",
        "redis://h/3?db=3&socket_timeout=2.5&health_check_interval=0&client_name=app",
        "rediss://h/0?ssl_cert_reqs=none",
        "unix:///tmp/r.sock?db=2",
    ):
        RedisAdapter.from_url(url).close()


def test_a_bulk_enqueue_of_large_payloads_takes_several_script_calls() -> None:
    """One script call carries at most records.BATCH_TEXT of payloads (else one packed
    argument of hundreds of payloads could pass Redis's 512 MB proto-max-bulk-len), and
    still at most 500 jobs; the jobs of other queues go in calls of their own."""
    from queuebox.backends.records import BATCH_TEXT, NewJob
    from queuebox.backends.redis_calls import enqueue_batches
    from queuebox.backends.redis_keys import KeyCache

    def job(queue: str, size: int) -> NewJob:
        return NewJob(name="J", handler="x" * size, queue=queue, priority=50)

    jobs = [job("big", BATCH_TEXT // 4 + 1) for _ in range(10)] + [job("small", 10)] * 1001
    calls, batches = enqueue_batches(jobs, KeyCache("qb"), "qb:wake")
    sizes = [(queue, len(positions)) for queue, positions, _ in batches]
    big = [("big", 3), ("big", 3), ("big", 3), ("big", 1)]
    assert sizes == [*big, ("small", 500), ("small", 500), ("small", 1)]
    assert [p for _, positions, _ in batches for p in positions] == list(range(len(jobs)))
    assert len(calls) == len(batches)
