"""Per-store plumbing for queuebox: a private namespace, direct bulk loads, sizes, cleanup.

Each benchmark gets its own Redis key prefix, PostgreSQL schema or SQLite file, and removes
it afterwards. The bulk loads write the rows the adapter would write (same handler text,
same defaults) straight into the SQL table, so that a million waiting jobs take seconds.
"""

from __future__ import annotations

import secrets
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["DEFAULT_URLS", "StoreSpace", "with_query"]

DEFAULT_URLS = {
    "redis": "redis://127.0.0.1:6379/0",
    "postgres": "postgresql://127.0.0.1:5432/test",
    "sqlite": "",
}

_HANDLER_HEAD = '{"name":"BenchNoop","args":['
_HANDLER_TAIL = '],"kwargs":{}}'


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass
class StoreSpace:
    """One private namespace on one store, and the queuebox URL that uses it."""

    store: str
    server_url: str
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    url: str = ""
    _dir: Path | None = None

    def __post_init__(self) -> None:
        if self.store == "redis":
            self.url = with_query(self.server_url, prefix=f"qbbench-{self.token}")
        elif self.store == "postgres":
            self.url = with_query(self.server_url, schema=self.schema)
        elif self.store == "sqlite":
            self._dir = Path(tempfile.mkdtemp(prefix="queuebox-bench-"))
            self.url = f"sqlite:///{self._dir / 'bench.db'}"
        else:
            raise ValueError(f"unknown store {self.store!r}")

    @property
    def schema(self) -> str:
        return f"qbbench_{self.token}"

    @property
    def prefix(self) -> str:
        return f"qbbench-{self.token}"

    @property
    def sqlite_path(self) -> Path:
        assert self._dir is not None
        return self._dir / "bench.db"

    # -- bulk loads -------------------------------------------------------------------------

    def bulk_load(self, first: int, count: int) -> bool:
        """Insert waiting no-op jobs ``first .. first + count`` directly; ``False`` when this
        store has no direct path (Redis: the caller uses the adapter)."""
        if self.store == "sqlite":
            with sqlite3.connect(self.sqlite_path, timeout=30) as conn:
                conn.execute(
                    """
                    WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?),
                    clock(now) AS (SELECT CAST(ROUND((julianday('now') - 2440587.5)
                                   * 86400000.0) AS INTEGER) * 1000)
                    INSERT INTO queuebox_jobs
                        (name, handler, queue, priority, run_at, created_at, updated_at)
                    SELECT 'BenchNoop', ? || i || ?, 'bench', 50, now, now, now FROM n, clock
                    """,
                    (first, first + count - 1, _HANDLER_HEAD, _HANDLER_TAIL),
                )
            return True
        if self.store == "postgres":
            import psycopg  # noqa: PLC0415 - only the PostgreSQL runs need it

            with psycopg.connect(self.server_url, autocommit=True) as conn:
                conn.execute(
                    f"""
                    INSERT INTO {self.schema}.queuebox_jobs (name, handler, queue, priority, run_at)
                    SELECT 'BenchNoop', %s || g || %s, 'bench', 50, now()
                    FROM generate_series(%s::bigint, %s::bigint) AS g
                    """,  # noqa: S608 - the schema is our own hex token
                    (_HANDLER_HEAD, _HANDLER_TAIL, first, first + count - 1),
                )
                conn.execute(f"ANALYZE {self.schema}.queuebox_jobs")
            return True
        return False

    # -- sizes ------------------------------------------------------------------------------

    def footprint(self) -> dict[str, Any]:
        """Bytes the store uses for this namespace, by part."""
        if self.store == "sqlite":
            with sqlite3.connect(self.sqlite_path, timeout=30) as conn:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                rows = conn.execute(
                    "SELECT name, SUM(pgsize) FROM dbstat WHERE name LIKE 'queuebox_jobs%' "
                    "GROUP BY name"
                ).fetchall()
            parts = {str(name): int(size) for name, size in rows}
            table = parts.pop("queuebox_jobs", 0)
            return {
                "table": table,
                "indexes": sum(parts.values()),
                "total": table + sum(parts.values()),
            }
        if self.store == "postgres":
            import psycopg  # noqa: PLC0415

            with psycopg.connect(self.server_url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT pg_table_size(%s::regclass), pg_indexes_size(%s::regclass)",
                    (f"{self.schema}.queuebox_jobs",) * 2,
                ).fetchone()
            assert row is not None
            return {"table": int(row[0]), "indexes": int(row[1]), "total": int(row[0] + row[1])}
        import redis  # noqa: PLC0415

        client = redis.Redis.from_url(self.server_url)
        try:
            total = 0
            keys = 0
            for batch in _chunks(client.scan_iter(match=f"{self.prefix}:*", count=1000), 500):
                pipe = client.pipeline(transaction=False)
                for key in batch:
                    pipe.memory_usage(key, samples=0)
                total += sum(int(size or 0) for size in pipe.execute())
                keys += len(batch)
            used = int(client.info("memory")["used_memory"])
        finally:
            client.close()
        return {"memory_usage": total, "keys": keys, "used_memory": used}

    # -- cleanup ----------------------------------------------------------------------------

    def remove(self) -> None:
        if self.store == "sqlite":
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
        elif self.store == "postgres":
            import psycopg  # noqa: PLC0415

            with psycopg.connect(self.server_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
        else:
            import redis  # noqa: PLC0415

            client = redis.Redis.from_url(self.server_url)
            try:
                for batch in _chunks(client.scan_iter(match=f"{self.prefix}:*", count=1000), 500):
                    client.unlink(*batch)
            finally:
                client.close()


def _chunks(items: Any, size: int) -> Any:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
