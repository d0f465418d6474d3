"""Bad input at the API: a clear QueueboxError that names the problem, and nothing stored."""

from __future__ import annotations

import decimal
import enum
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, cast

import pytest

import queuebox
from queuebox import Job, JobState
from queuebox.backends.base import Adapter
from queuebox.backends.memory import MemoryAdapter
from queuebox.errors import (
    InvalidArguments,
    InvalidPriority,
    InvalidQueueName,
    InvalidSchedule,
    PayloadTooLarge,
    QueueboxError,
    ValidationError,
)


class Color(enum.IntEnum):
    RED = 1


class MyStr(str):
    __slots__ = ()


class Plain:
    pass


def _cycle() -> list[Any]:
    items: list[Any] = []
    items.append(items)
    return items


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


class Target(Job):
    def perform(self, *args: Any, **kwargs: Any) -> None: ...


BAD_ARGUMENTS: list[tuple[str, tuple[Any, ...], dict[str, Any], str]] = [
    ("datetime", (1, {"when": datetime.now(UTC)}), {}, "args[1]['when']: datetime"),
    ("date", (date.today(),), {}, "args[0]: date"),
    ("timedelta", (timedelta(1),), {}, "args[0]: timedelta"),
    ("bytes", (b"raw",), {}, "args[0]: bytes"),
    ("bytearray", (bytearray(b"x"),), {}, "args[0]: bytearray"),
    ("set", ({1, 2},), {}, "args[0]: set"),
    ("frozenset", (frozenset(),), {}, "args[0]: frozenset"),
    ("tuple", ((1, 2),), {}, "use a list"),
    ("nested tuple", ([1, (2,)],), {}, "args[0][1]: tuple"),
    ("complex", (1j,), {}, "args[0]: complex"),
    ("decimal", (decimal.Decimal("1.5"),), {}, "args[0]: Decimal"),
    ("nan", (float("nan"),), {}, "not a finite number"),
    ("inf", (float("inf"),), {}, "not a finite number"),
    ("-inf in dict", ({"x": float("-inf")},), {}, "args[0]['x']"),
    ("object", (object(),), {}, "args[0]: object"),
    ("class instance", (Plain(),), {}, "args[0]: Plain"),
    ("function", (len,), {}, "builtin_function_or_method"),
    ("lambda", (lambda: 1,), {}, "function is not a JSON value"),
    ("class", (Plain,), {}, "type is not a JSON value"),
    ("module", (uuid,), {}, "module is not a JSON value"),
    ("uuid", (uuid.uuid4(),), {}, "UUID"),
    ("path", (Path("/tmp"),), {}, "Path"),
    ("int enum", (Color.RED,), {}, "Color"),
    ("str subclass", (MyStr("x"),), {}, "MyStr"),
    ("int dict key", ({1: "a"},), {}, "JSON object keys must be str"),
    ("none dict key", ({None: "a"},), {}, "JSON object keys must be str"),
    ("tuple dict key", ({(1, 2): "a"},), {}, "JSON object keys must be str"),
    ("lone surrogate", ("\ud800",), {}, "lone surrogate"),
    ("surrogate key", ({"\udfff": 1},), {}, "lone surrogate"),
    ("cycle", (_cycle(),), {}, "nested more than"),
    ("too deep", (_deep(100),), {}, "nested more than"),
    ("kwarg datetime", (), {"at": datetime.now(UTC)}, "kwargs['at']: datetime"),
    ("kwarg set", (), {"tags": {"a"}}, "kwargs['tags']: set"),
    ("deep kwarg", (), {"a": {"b": [1, {"c": b"x"}]}}, "kwargs['a']['b'][1]['c']: bytes"),
    ("range", (range(3),), {}, "range"),
    ("generator", ((i for i in range(2)),), {}, "generator"),
    ("memoryview", (memoryview(b"x"),), {}, "memoryview"),
    ("exception", (ValueError("x"),), {}, "ValueError"),
]


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [case[1:] for case in BAD_ARGUMENTS],
    ids=[case[0] for case in BAD_ARGUMENTS],
)
def test_bad_arguments_are_rejected_and_nothing_is_stored(
    memory_store: MemoryAdapter, args: tuple[Any, ...], kwargs: dict[str, Any], expected: str
) -> None:
    with pytest.raises(InvalidArguments) as caught:
        Target.perform_later(*args, **kwargs)
    assert expected in str(caught.value)
    assert memory_store.counts() == []


BAD_OPTIONS: list[tuple[str, Callable[[], object], type[QueueboxError], str]] = [
    ("empty queue", lambda: Target.set(queue=""), InvalidQueueName, "1 to 64"),
    ("space queue", lambda: Target.set(queue="my queue"), InvalidQueueName, "'my queue'"),
    ("slash queue", lambda: Target.set(queue="a/b"), InvalidQueueName, "a/b"),
    ("star queue", lambda: Target.set(queue="*"), InvalidQueueName, "'*'"),
    ("brace queue", lambda: Target.set(queue="{x}"), InvalidQueueName, "{x}"),
    ("colon queue", lambda: Target.set(queue="a:b"), InvalidQueueName, "a:b"),
    ("long queue", lambda: Target.set(queue="q" * 65), InvalidQueueName, "1 to 64"),
    ("unicode queue", lambda: Target.set(queue="émail"), InvalidQueueName, "émail"),
    ("int queue", lambda: Target.set(queue=5), InvalidQueueName, "5"),  # type: ignore[arg-type]
    ("priority 0", lambda: Target.set(priority=0), InvalidPriority, "1 (runs first) to 100"),
    ("priority 101", lambda: Target.set(priority=101), InvalidPriority, "101"),
    ("priority -1", lambda: Target.set(priority=-1), InvalidPriority, "-1"),
    ("priority float", lambda: Target.set(priority=1.5), InvalidPriority, "1.5"),  # type: ignore[arg-type]
    ("priority str", lambda: Target.set(priority="1"), InvalidPriority, "'1'"),  # type: ignore[arg-type]
    ("priority bool", lambda: Target.set(priority=True), InvalidPriority, "True"),
    ("negative wait", lambda: Target.set(wait=-1), InvalidSchedule, "zero or more"),
    ("negative timedelta", lambda: Target.set(wait=timedelta(seconds=-5)), InvalidSchedule, "zero"),
    ("nan wait", lambda: Target.set(wait=float("nan")), InvalidSchedule, "nan"),
    ("inf wait", lambda: Target.set(wait=float("inf")), InvalidSchedule, "inf"),
    ("str wait", lambda: Target.set(wait="10"), InvalidSchedule, "seconds"),  # type: ignore[arg-type]
    ("bool wait", lambda: Target.set(wait=True), InvalidSchedule, "seconds"),
    (
        "naive wait_until",
        lambda: Target.set(wait_until=datetime(2027, 1, 1)),
        InvalidSchedule,
        "time zone",
    ),
    ("str wait_until", lambda: Target.set(wait_until="2027-01-01"), InvalidSchedule, "aware"),  # type: ignore[arg-type]
    (
        "date wait_until",
        lambda: Target.set(wait_until=date(2027, 1, 1)),  # type: ignore[arg-type]
        InvalidSchedule,
        "datetime",
    ),
    (
        "both waits",
        lambda: Target.set(wait=5, wait_until=datetime.now(UTC)),
        InvalidSchedule,
        "not both",
    ),
    (
        "both waits chained",
        lambda: Target.set(wait=5).set(wait_until=datetime.now(UTC)),
        InvalidSchedule,
        "not both",
    ),
    (
        "too large",
        lambda: Target.perform_later("x" * (1024 * 1024)),
        PayloadTooLarge,
        "over the limit",
    ),
    ("bad bulk item", lambda: Target.perform_later_many([1]), InvalidArguments, "calls[0]"),  # type: ignore[list-item]
    (
        "bad bulk argument",
        lambda: Target.perform_later_many([[1], [b"x"]]),
        InvalidArguments,
        "calls[1]: args[0]: bytes",
    ),
]


@pytest.mark.parametrize(
    ("action", "error", "expected"),
    [case[1:] for case in BAD_OPTIONS],
    ids=[case[0] for case in BAD_OPTIONS],
)
def test_bad_options_are_rejected_and_nothing_is_stored(
    memory_store: MemoryAdapter,
    action: Callable[[], object],
    error: type[QueueboxError],
    expected: str,
) -> None:
    def attempt() -> None:
        options = action()
        if isinstance(options, queuebox.JobOptions):
            options.perform_later()

    with pytest.raises(error) as caught:
        attempt()
    assert expected in str(caught.value)
    assert isinstance(caught.value, ValidationError)
    assert memory_store.counts() == []


def test_there_are_at_least_fifty_distinct_bad_inputs() -> None:
    assert len(BAD_ARGUMENTS) + len(BAD_OPTIONS) >= 50


def test_payload_cap_is_configurable(memory_store: MemoryAdapter) -> None:
    queuebox.configure(max_payload_bytes=100)
    with pytest.raises(PayloadTooLarge, match="over the limit of 100"):
        Target.perform_later("x" * 100)
    assert Target.perform_later("x" * 10).name == "Target"


def test_a_bad_call_in_a_batch_stores_none_of_it(memory_store: MemoryAdapter) -> None:
    with pytest.raises(InvalidArguments):
        Target.perform_later_many([[1], [2], [{3}]])
    assert memory_store.counts() == []


def test_perform_now_checks_arguments_too() -> None:
    with pytest.raises(InvalidArguments, match="args"):
        Target.perform_now(object())


def test_valid_edge_values_are_accepted(memory_store: MemoryAdapter) -> None:
    values: list[object] = [
        None,
        True,
        False,
        0,
        -(2**70),
        1e308,
        -0.0,
        "",
        "\x00",
        "𝄞",
        [],
        {},
        {"": []},
    ]
    record = Target.set(queue="a.b-c_D9", priority=100).perform_later(*values, k=_deep(60))
    assert record.priority == 100
    assert Target.set(priority=1, wait=0).perform_later().priority == 1


# -- run times every store can hold --------------------------------------------------------

EAST = timezone(timedelta(hours=14))
WEST = timezone(timedelta(hours=-10))

OUT_OF_RANGE: list[tuple[str, Callable[[], object], str]] = [
    ("year 1 east of UTC", lambda: Target.set(wait_until=datetime(1, 1, 1, tzinfo=EAST)), "range"),
    (
        "year 9999 west of UTC",
        lambda: Target.set(wait_until=datetime(9999, 12, 31, 23, tzinfo=WEST)),
        "range",
    ),
    ("before 1970", lambda: Target.set(wait_until=datetime(1969, 12, 31, tzinfo=UTC)), "1970"),
    ("1e15 s", lambda: Target.set(wait=1e15), "too long"),
    ("10**400 s", lambda: Target.set(wait=10**400), "too long"),
    ("timedelta.max", lambda: Target.set(wait=timedelta.max), "too long"),
    ("10**20 s", lambda: Target.set(wait=10**20), "too long"),
]


@pytest.mark.parametrize(
    ("action", "expected"),
    [case[1:] for case in OUT_OF_RANGE],
    ids=[case[0] for case in OUT_OF_RANGE],
)
def test_run_times_outside_what_stores_hold_are_refused_on_every_store(
    any_store: Adapter, action: Callable[[], object], expected: str
) -> None:
    def attempt() -> None:
        options = action()
        assert isinstance(options, queuebox.JobOptions)
        options.perform_later()

    with pytest.raises(InvalidSchedule) as caught:
        attempt()
    assert expected in str(caught.value)
    assert "9999-12-31" in str(caught.value), "the message says the allowed range"
    assert any_store.counts() == [], "nothing was stored"


def test_the_edges_of_the_range_are_stored_on_every_store(any_store: Adapter) -> None:
    earliest = Target.set(wait_until=datetime(1970, 1, 1, tzinfo=UTC)).perform_later()
    latest = Target.set(wait_until=datetime(9999, 12, 30, tzinfo=UTC)).perform_later()
    long_wait = Target.set(wait=100 * 365 * 86400).perform_later()
    assert earliest.state is JobState.READY and latest.state is JobState.SCHEDULED
    assert any_store.get(latest.id) == latest
    assert long_wait.run_at.year >= 2120
    assert [job.id for job in any_store.claim("w", None, limit=5, lease=60)] == [earliest.id]


def test_wait_until_is_stored_in_utc(memory_store: MemoryAdapter) -> None:
    paris = timezone(timedelta(hours=2))
    record = Target.set(wait_until=datetime(2027, 6, 1, 12, tzinfo=paris)).perform_later()
    assert record.run_at == datetime(2027, 6, 1, 10, tzinfo=UTC)
    assert record.run_at.utcoffset() == timedelta(0)


# -- calls that perform cannot take --------------------------------------------------------


class TakesTwo(Job):
    def perform(self, order_id: int, email: str) -> None: ...


class TakesDefaults(Job):
    def perform(self, order_id: int, *, notify: bool = True) -> None: ...


@queuebox.job(name="takes_one_function")
def takes_one(user_id: int) -> None: ...


BAD_CALLS: list[tuple[str, Callable[[], object], str]] = [
    ("missing", lambda: TakesTwo.perform_later(1), "missing a required argument: 'email'"),
    ("too many", lambda: TakesTwo.perform_later(1, "a", 3), "too many positional"),
    ("unexpected", lambda: TakesTwo.perform_later(1, "a", cc="b"), "unexpected keyword"),
    ("keyword-only", lambda: TakesDefaults.perform_later(1, True), "too many positional"),
    ("function", cast(Callable[[], object], takes_one.perform_later), "argument: 'user_id'"),
    (
        "function kw",
        lambda: takes_one.perform_later(1, x=2),  # type: ignore[call-arg]
        "unexpected keyword argument 'x'",
    ),
    ("bulk", lambda: TakesTwo.perform_later_many([[1, "a"], [2]]), "calls[1]"),
    ("set", lambda: TakesTwo.set(queue="q").perform_later(), "takes (order_id, email)"),
    ("perform_now", lambda: TakesTwo.perform_now(1), "missing a required argument"),
]


@pytest.mark.parametrize(
    ("action", "expected"),
    [case[1:] for case in BAD_CALLS],
    ids=[case[0] for case in BAD_CALLS],
)
def test_a_call_perform_cannot_take_is_refused_and_nothing_is_stored(
    memory_store: MemoryAdapter, action: Callable[[], object], expected: str
) -> None:
    with pytest.raises(InvalidArguments) as caught:
        action()
    assert expected in str(caught.value)
    message = str(caught.value)
    assert any(name in message for name in ("TakesTwo", "TakesDefaults", "takes_one_function"))
    assert memory_store.counts() == []


def test_calls_perform_can_take_are_stored(memory_store: MemoryAdapter) -> None:
    TakesTwo.perform_later(1, "a")
    TakesTwo.perform_later(order_id=1, email="a")
    TakesDefaults.perform_later(1)
    TakesDefaults.perform_later(1, notify=False)
    takes_one.perform_later(user_id=3)
    assert sum(c.total for c in memory_store.counts()) == 5
