"""Bad input, as properties, on every store (memory, SQLite, PostgreSQL, Redis).

- ``perform_later`` either stores arguments that come back exactly equal in ``perform``
  (types included: bool is not int, 1.0 is not 1), or raises a ``QueueboxError`` and leaves
  the store unchanged; Hypothesis draws valid JSON values and invalid ones alike.
- A payload naming ``os.remove``, ``builtins.eval`` or ``subprocess.call`` imports and runs
  nothing: the job fails as unknown.
- Queue names cannot reach a Redis key: names with braces, ``*``, ``:`` or spaces are refused,
  and for every valid name the hash tag of every key is exactly the queue name.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from queuebox import Job, config, from_url
from queuebox.backends.base import Adapter, JobState, NewJob
from queuebox.errors import InvalidQueueName, QueueboxError
from queuebox.runner.settings import WorkerSettings
from queuebox.runner.worker import Worker

received: list[tuple[list[Any], dict[str, Any]]] = []


class Echo(Job):
    """Keeps exactly what ``perform`` received."""

    def perform(self, /, *args: Any, **kwargs: Any) -> None:
        received.append((list(args), kwargs))


# Server stores carry their tier's marker, so that `-m unit` leaves them out, not skips them.
STORES = (
    "memory",
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
)


@pytest.fixture(params=STORES)
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Adapter]:
    """An empty store of each kind, configured as queuebox's store."""
    kind = request.param
    tag = uuid.uuid4().hex[:10]
    store: Adapter
    if kind == "memory":
        store = from_url("memory://")
    elif kind == "sqlite":
        store = from_url(f"sqlite:///{tmp_path / 'props.db'}")
    elif kind == "postgres":
        base = request.getfixturevalue("postgres_url")
        store = from_url(f"{base}{'&' if '?' in base else '?'}schema=props_{tag}")
    else:
        base = request.getfixturevalue("redis_url")
        store = from_url(f"{base}{'&' if '?' in base else '?'}prefix=props-{tag}")
    store.migrate()
    config.configure(adapter=store)
    try:
        yield store
    finally:
        if kind == "redis":
            store.purge()  # type: ignore[attr-defined]
        store.close()
        if kind == "postgres":
            import psycopg

            with psycopg.connect(base, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "props_{tag}" CASCADE')


# -- values ------------------------------------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(["", "\x00", "a\x00b", "\ud7ff\ue000\U0010ffff", "é", "😀", "\u2028"])
)
# Keys "self" and "cls" are left out of kwargs here: see test_kwargs_named_like_the_receiver.
KEYS = st.text(max_size=8)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)


class Color(enum.IntEnum):
    RED = 1


class Text(str):
    pass


def _deep(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


BAD_KEYS = st.integers() | st.none() | st.tuples(st.integers())
INVALID_LEAVES = (
    st.tuples(JSON_SCALARS)
    | st.sets(st.integers(), max_size=3)
    | st.frozensets(st.integers(), max_size=3)
    | st.binary(max_size=8)
    | st.builds(bytearray, st.binary(max_size=4))
    | st.sampled_from([math.nan, math.inf, -math.inf])
    | st.datetimes()
    | st.dates()
    | st.timedeltas()
    | st.decimals(allow_nan=False)
    | st.complex_numbers(allow_nan=False, allow_infinity=False)
    | st.uuids()
    | st.just(Color.RED)
    | st.builds(Text, st.text(max_size=3))
    | st.dictionaries(BAD_KEYS, JSON_SCALARS, min_size=1, max_size=2)
    | st.text(alphabet=st.characters(categories=["Cs"]), min_size=1, max_size=3)
    | st.integers(2**20, 2**20 + 8).map(lambda n: "x" * n)  # over the payload limit by itself
    | st.lists(st.integers(300_000, 300_008).map(lambda n: "y" * n), min_size=1, max_size=5)
    | st.integers(65, 80).map(_deep)  # deeper than validation allows
    | st.just(object())
)  # fmt: skip
ANY_VALUES = st.recursive(
    JSON_SCALARS | INVALID_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
CALLS = st.tuples(
    st.lists(JSON_VALUES | ANY_VALUES, max_size=3),
    st.dictionaries(KEYS | st.sampled_from(["self", "cls"]), JSON_VALUES | ANY_VALUES, max_size=3),
)


def same(a: Any, b: Any) -> bool:
    """Equal, with equal types all the way down (True is not 1, 1.0 is not 1, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    return bool(a == b)


def snapshot(store: Adapter) -> list[Any]:
    return [*store.counts(), *store.list_jobs(limit=10)]


PROPERTY = settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@PROPERTY
@given(call=CALLS)
def test_arguments_round_trip_or_are_refused(
    adapter: Adapter, call: tuple[list[Any], dict[str, Any]]
) -> None:
    args, kwargs = call
    before = snapshot(adapter)
    received.clear()
    try:
        record = Echo.perform_later(*args, **kwargs)
    except QueueboxError as exc:
        event(f"refused: {type(exc).__name__}")
        assert snapshot(adapter) == before, "a refused call left something behind"
        return
    event("stored")
    assert record.name == "Echo"
    summary = Worker(adapter, WorkerSettings(max_attempts=1)).work_off()
    assert summary.succeeded == 1 and summary.failed == 0, summary
    assert len(received) == 1
    got_args, got_kwargs = received[0]
    assert same(got_args, list(args)), (got_args, args)
    assert same(got_kwargs, kwargs), (got_kwargs, kwargs)
    assert adapter.counts() == []


@pytest.mark.parametrize(
    "value",
    [float("nan"), (1, 2), {1, 2}, b"x", dt.datetime(2020, 1, 1), {1: 2}, "\udc80", Color.RED],
    ids=["nan", "tuple", "set", "bytes", "datetime", "int-key", "surrogate", "intenum"],
)
def test_each_kind_of_bad_value_is_refused(adapter: Adapter, value: object) -> None:
    """The named cases of the property, so a regression names the kind of value."""
    with pytest.raises(QueueboxError):
        Echo.perform_later({"deep": [value]})
    assert adapter.counts() == []


def test_an_int_too_long_for_json_is_refused_with_a_queuebox_error(adapter: Adapter) -> None:
    # json.dumps cannot write ints over sys.get_int_max_str_digits() digits.
    with pytest.raises(QueueboxError, match=r"args\[0\]: an int of more than"):
        Echo.perform_later(10**5000)
    with pytest.raises(QueueboxError, match=r"args\[1\]\['n'\]: an int of more than"):
        Echo.perform_later(1, {"n": -(10**5000)})
    assert adapter.counts() == []
    Echo.perform_later(10**1000)  # long, but writable: stored and run as it was given
    Worker(adapter).work_off()
    assert received[-1] == ([10**1000], {})


@pytest.mark.parametrize("key", ["cls", "self"])
def test_kwargs_named_like_the_receiver(adapter: Adapter, key: str) -> None:
    Echo.set(priority=5).perform_later(**{key: 1})
    Echo.perform_later(**{key: 1})
    Worker(adapter).work_off()
    assert received[-1] == ([], {key: 1})


# -- forged payloads -----------------------------------------------------------------------------

REAL_STORES = STORES[1:]  # the stores with a real server or file behind them


@pytest.mark.parametrize("adapter", REAL_STORES, indirect=True)
def test_forged_payloads_import_and_run_nothing(adapter: Adapter, tmp_path: Path) -> None:
    target = tmp_path / "keep-me"
    target.write_text("x")
    pwned = tmp_path / "pwned"
    forged = {
        "os.remove": [str(target)],
        "builtins.eval": [f"open({str(pwned)!r}, 'w')"],
        "subprocess.call": [["touch", str(pwned)]],
        "os.system": [f"touch {pwned}"],
        "shutil.rmtree": [str(tmp_path)],
    }
    Echo.perform_later("warm-up")  # the first job loads whatever the store needs
    Worker(adapter).work_off()
    ids = {}
    for name, args in forged.items():
        handler = json.dumps({"name": name, "args": args})
        ids[name] = adapter.schedule([NewJob(name=name, handler=handler, queue="q", priority=1)])
    modules = set(sys.modules)
    summary = Worker(adapter).work_off()
    assert set(sys.modules) - modules == set(), "a payload made the worker import a module"
    assert summary.failed == len(forged) and summary.succeeded == 0
    assert target.read_text() == "x" and not pwned.exists()
    for name, [record] in ids.items():
        stored = adapter.get(record.id)
        assert stored is not None and stored.state is JobState.FAILED and stored.attempts == 1
        assert stored.last_error is not None
        assert stored.last_error.startswith(f"UnknownJob: no job named {name!r}")


# -- queue names ---------------------------------------------------------------------------------

BAD_QUEUE_NAMES = [
    "{default}",
    "a}b",
    "a{b",
    "*",
    "a*",
    "a:b",
    "with space",
    " x",
    "",
    "x" * 65,
    "a\nb",
    "a\x00b",
    "é",
    "a/b",
    "?",
    "[ab]",
]


@pytest.mark.parametrize("adapter", REAL_STORES, indirect=True)
def test_bad_queue_names_are_refused_on_every_store(adapter: Adapter) -> None:
    for name in BAD_QUEUE_NAMES:
        with pytest.raises(InvalidQueueName):
            Echo.set(queue=name).perform_later(1)
        with pytest.raises(QueueboxError):
            WorkerSettings(queues=(name,))
    assert adapter.counts() == []
    for name in BAD_QUEUE_NAMES:  # a forged id names no job, and never raises
        assert adapter.get(f"{name}/1") is None
        assert adapter.delete(f"{name}/1") is False


@pytest.mark.parametrize("adapter", [STORES[-1]], indirect=True)  # Redis
def test_redis_refuses_bad_names_even_below_the_api(adapter: Adapter) -> None:
    for name in BAD_QUEUE_NAMES:
        job = NewJob(name="Echo", handler='{"name": "Echo"}', queue=name, priority=1)
        with pytest.raises(InvalidQueueName):
            adapter.schedule([job])
        with pytest.raises(InvalidQueueName):
            adapter.claim("w", [name], lease=1.0)
    assert adapter.counts() == []


QUEUE_NAMES = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-",
    min_size=1,
    max_size=64,
)


@settings(max_examples=500, deadline=None)
@given(queue=QUEUE_NAMES, prefix=st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True))
def test_redis_keys_hash_tag_is_exactly_the_queue(queue: str, prefix: str) -> None:
    from redis.crc import key_slot

    from queuebox.backends.redis_keys import QueueKeys

    keys = QueueKeys.of(prefix, queue)
    for key in keys:
        start = key.index("{")
        assert key[start + 1 : key.index("}", start)] == queue, key
        assert key_slot(key.encode()) == key_slot(f"{{{queue}}}".encode())


@settings(max_examples=500, deadline=None)
@given(queue=st.text(max_size=70))
def test_redis_key_builder_refuses_every_name_validation_refuses(queue: str) -> None:
    from queuebox.backends.redis_keys import QueueKeys
    from queuebox.validation import check_queue_name

    try:
        check_queue_name(queue)
    except InvalidQueueName:
        with pytest.raises(InvalidQueueName):
            QueueKeys.of("queuebox", queue)
    else:
        assert all("{" + queue + "}" in key for key in QueueKeys.of("queuebox", queue))


def test_decimal_and_friends_are_not_json() -> None:
    """Values that look numeric but are not exactly int or float are refused by type."""
    config.configure(adapter=from_url("memory://"))
    for value in (decimal.Decimal(1), Color.RED, True + 0j):
        with pytest.raises(QueueboxError):
            Echo.perform_later(value)
