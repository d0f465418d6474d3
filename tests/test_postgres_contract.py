"""The adapter contract on a real PostgreSQL, with 5,000 jobs in its many-process test.

Each test gets a fresh schema, dropped afterwards, so tests never see each other's jobs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from queuebox.backends import from_url
from queuebox.testing import AdapterContract, AdapterFactory

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    schema = f"qb_test_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def pg_url(postgres_url: str, pg_schema: str) -> str:
    return f"{postgres_url}{'&' if '?' in postgres_url else '?'}schema={pg_schema}"


class TestPostgresAdapter(AdapterContract):
    # Four processes claim 5,000 jobs, each exactly once (about a second here).
    concurrent_jobs = 5000

    @pytest.fixture
    def adapter_factory(self, pg_url: str) -> AdapterFactory:
        return lambda: from_url(pg_url)
