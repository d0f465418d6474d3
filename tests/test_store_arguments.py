"""A store built from Python code with an argument of the wrong type fails at once, naming
the argument (not deep inside the first call, and never by taking a true string such as
``"off"`` for True)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fakeredis
import pytest

from queuebox.backends.postgres import PostgresAdapter
from queuebox.backends.redis import RedisAdapter
from queuebox.backends.sqlite import SQLiteAdapter
from queuebox.errors import ConfigurationError

URL = "postgresql://127.0.0.1:5432/test"


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"url": 5432}, "url must be a string"),
        ({"url": b"postgresql://h/db"}, "url must be a string"),
        ({"url": None}, "url must be a string"),
        ({"url": URL, "wakeup": "off"}, "wakeup='off' must be True, False or None"),
        ({"url": URL, "prepare": 1}, "prepare=1 must be True, False or None"),
        ({"url": URL, "schema": 7}, "schema must be a string or None"),
        ({"url": URL, "table": ["jobs"]}, "table must be a string or None"),
        ({"url": URL, "application_name": None}, "application_name must be a string"),
        ({"url": URL, "connect_timeout": "10"}, "connect_timeout must be whole seconds"),
        ({"url": URL, "connect_timeout": True}, "connect_timeout must be whole seconds"),
        ({"url": URL, "connect_timeout": -1}, "connect_timeout must be >= 0"),
    ],
)
def test_postgres_arguments(arguments: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        PostgresAdapter(**arguments)
    assert named in str(caught.value)


def test_postgres_flags_given_as_bools_are_kept() -> None:
    adapter = PostgresAdapter(URL, wakeup=False, prepare=True, connect_timeout=3)
    assert adapter.wakeup is False and adapter.prepare is True


@pytest.mark.parametrize(
    ("path", "busy_timeout", "named"),
    [
        (None, 30.0, "path must be a file path"),
        (123, 30.0, "path must be a file path"),
        (b"jobs.db", 30.0, "path must be a file path"),
        ("jobs.db", "30", "busy_timeout must be a number of seconds"),
        ("jobs.db", True, "busy_timeout must be a number of seconds"),
        ("jobs.db", float("nan"), "busy_timeout must be a finite number >= 0"),
        ("jobs.db", float("inf"), "busy_timeout must be a finite number >= 0"),
        ("jobs.db", -1, "busy_timeout must be a finite number >= 0"),
    ],
)
def test_sqlite_arguments(tmp_path: Path, path: object, busy_timeout: object, named: str) -> None:
    given = tmp_path / path if isinstance(path, str) else path
    with pytest.raises(ConfigurationError) as caught:
        SQLiteAdapter(given, busy_timeout=busy_timeout)  # type: ignore[arg-type]
    assert named in str(caught.value)
    assert not (tmp_path / "jobs.db").exists()


def test_sqlite_from_url_refuses_a_busy_timeout_that_is_not_finite(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="finite"):
        SQLiteAdapter.from_url(f"sqlite:///{tmp_path}/jobs.db?busy_timeout=nan")


def test_redis_adapter_given_a_url_says_to_use_from_url() -> None:
    with pytest.raises(TypeError, match=r"not str; for a URL use RedisAdapter\.from_url"):
        RedisAdapter("rediss://127.0.0.1:6379/0")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"takes a redis\.Redis or redis\.cluster\.RedisCluster"):
        RedisAdapter(object())  # type: ignore[arg-type]
    assert isinstance(RedisAdapter(fakeredis.FakeRedis()), RedisAdapter)
