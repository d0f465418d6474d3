"""A third dialect of the SQL base, for MariaDB through PyMySQL, written for this test only:
it proves that a store on ``SQLStore`` is a query file and the few methods below, and it
runs the whole contract. MariaDB has ``FOR UPDATE SKIP LOCKED`` and ``INSERT ...
RETURNING`` but no ``UPDATE ... RETURNING``, so claims take the base's three-statement path.

The server is MariaDB at 127.0.0.1:3306 (database ``test``, user ``root``, no password), or
``QUEUEBOX_TEST_MARIADB_URL``. MariaDB is no store queuebox ships, so without a server the
module is skipped, with the reason, even in CI.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest

from queuebox.backends.base import Capabilities
from queuebox.backends.sql import SQLStore, load_queries
from queuebox.errors import QueueboxError, StorageUnavailable
from queuebox.testing import AdapterContract, AdapterFactory, UnreachableFactory

pymysql = pytest.importorskip("pymysql", reason="the MariaDB dialect test needs PyMySQL")

MARIADB_URL = os.environ.get("QUEUEBOX_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class MariaDBStore(SQLStore):
    """Jobs in one MariaDB table: the whole dialect."""

    capabilities = Capabilities(wakeup=False, unique=True)
    query_file: ClassVar[Path] = Path(__file__).with_suffix(".sql")
    driver_errors: ClassVar[tuple[type[Exception], ...]] = (pymysql.err.Error,)
    update_returning = False
    connection_per_thread = True

    def __init__(self, url: str, *, table: str = "queuebox_jobs") -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,50}", table):
            raise ValueError(f"table name {table!r}: use lower-case letters, digits and _")
        parts = urlsplit(url)
        self._connect_args = {
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 3306,
            "user": parts.username or "root",
            "password": parts.password or "",
            "database": parts.path.lstrip("/") or "test",
        }
        self.table = table
        super().__init__()

    def __repr__(self) -> str:
        return f"MariaDBStore(table={self.table!r})"

    def _prepare(self, text: str) -> str:
        return (
            text.replace("{jobs}", f"`{self.table}`")
            .replace("{migrations}", f"`{self.table}_migrations`")
            .replace("{migrations_name}", f"'{self.table}_migrations'")
        )

    def _connect(self) -> Any:
        return pymysql.connect(
            **self._connect_args,
            autocommit=True,
            charset="utf8mb4",
            cursorclass=pymysql.cursors.DictCursor,
            client_flag=pymysql.constants.CLIENT.FOUND_ROWS,  # rowcount: rows matched
            connect_timeout=5,
        )

    def _failure(self, exc: Exception) -> QueueboxError | None:
        if isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError):
            return StorageUnavailable(f"MariaDB is unavailable: {exc}")
        return None

    def _alive(self, connection: Any) -> bool:
        return bool(connection.open)

    def _broken(self, connection: Any, exc: Exception) -> bool:
        return isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError)

    def _moment(self, value: Any) -> datetime:
        if type(value) is not int:
            raise TypeError(f"{value!r} is not integer microseconds")
        return _EPOCH + value * _MICROSECOND

    def _time_param(self, moment: datetime) -> int:
        return (moment - _EPOCH) // _MICROSECOND

    def _seconds_param(self, seconds: float) -> int:
        return round(seconds * 1_000_000)

    def _array_param(self, values: list[Any]) -> tuple[Any, ...]:
        return tuple(values)  # PyMySQL writes (1, 2, 3), for "id IN %(ids)s"

    def _bind(self, params: dict[str, Any]) -> dict[str, Any]:
        bound = super()._bind(params)
        for name, flag in (("queues", "any_queue"), ("states", "any_state")):
            if name in bound:  # "x IN ()" is no SQL: NULL (all) becomes a flag
                bound[flag] = bound[name] is None
                bound[name] = ("",) if bound[name] is None else bound[name]
        return bound


def _mariadb_url() -> str:
    parts = urlsplit(MARIADB_URL)
    try:
        with socket.create_connection((parts.hostname, parts.port or 3306), timeout=2):
            return MARIADB_URL
    except OSError as exc:
        pytest.skip(f"the MariaDB dialect test needs a server at {parts.netloc}: {exc}")


@pytest.fixture
def mariadb_table() -> Iterator[tuple[str, str]]:
    url, table = _mariadb_url(), f"qb_{uuid.uuid4().hex[:12]}"
    yield url, table
    parts = urlsplit(url)
    with pymysql.connect(
        host=parts.hostname, port=parts.port or 3306, user=parts.username or "root",
        database=parts.path.lstrip("/"), autocommit=True,
    ) as conn, conn.cursor() as cursor:  # fmt: skip
        cursor.execute(f"DROP TABLE IF EXISTS `{table}`, `{table}_migrations`")


class TestMariaDBStore(AdapterContract):
    @pytest.fixture
    def adapter_factory(self, mariadb_table: tuple[str, str]) -> AdapterFactory:
        url, table = mariadb_table
        return lambda: MariaDBStore(url, table=table)

    @pytest.fixture
    def unreachable_adapter_factory(self) -> UnreachableFactory:
        return lambda: MariaDBStore("mysql://root@127.0.0.1:1/test")


def test_the_dialect_defines_exactly_the_queries_the_base_asks_for() -> None:
    assert set(load_queries(MariaDBStore.query_file)) == MariaDBStore.required_queries()
    assert {"claim_candidates", "claim_lock", "claim_read"} <= MariaDBStore.required_queries()
    assert "claim" not in MariaDBStore.required_queries()
