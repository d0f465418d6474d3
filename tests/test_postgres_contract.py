"""The adapter contract on a real PostgreSQL, with 5,000 jobs in its many-process test.

Each test gets a fresh schema, dropped afterwards, so tests never see each other's jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest

from queuebox.backends import from_url
from queuebox.testing import (
    AdapterContract,
    AdapterFactory,
    TransactionHandle,
    UnreachableFactory,
)

pytestmark = pytest.mark.postgres


class TestPostgresAdapter(AdapterContract):
    # Four processes claim 5,000 jobs, each exactly once (about a second here).
    concurrent_jobs = 5000

    @pytest.fixture
    def adapter_factory(self, pg_url: str) -> AdapterFactory:
        return lambda: from_url(pg_url)

    @pytest.fixture
    def unreachable_adapter_factory(self) -> UnreachableFactory:
        # Port 1 on the loopback: nothing listens there, so every connection is refused.
        return lambda: from_url("postgresql://app:s3cret@127.0.0.1:1/test?connect_timeout=2")

    @pytest.fixture
    def transaction_factory(self, postgres_url: str) -> Iterator[Callable[[], TransactionHandle]]:
        opened: list[psycopg.Connection[Any]] = []

        def begin() -> TransactionHandle:
            conn = psycopg.connect(postgres_url)  # not autocommit: a transaction until commit
            opened.append(conn)
            return SimpleNamespace(connection=conn, commit=conn.commit, rollback=conn.rollback)

        yield begin
        for conn in opened:
            conn.close()
