"""Raw baselines: what the servers do with no job library in between.

* Redis ``PING`` one at a time: the round-trip limit of one-at-a-time enqueue.
* One pipeline of 10,000 ``ZADD``: the limit of a bulk enqueue.
* PostgreSQL one-statement claim-and-delete, one job per statement, autocommit:
  ``DELETE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING``.
* PostgreSQL enqueue limits, into a table of the jobs table's shape (``postgres_inserts``):
  a one-row ``INSERT`` loop in autocommit with psycopg 3's defaults (statements prepared on
  the server from the fifth run) and with preparation off (as queuebox connects), the same
  loop on an ``AsyncConnection``, and ``executemany`` of all rows in one transaction.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

__all__ = ["postgres_claim_loop", "postgres_inserts", "redis_baselines"]

#: The columns a job's row gets at enqueue, as queuebox's insert writes them (the handler is
#: BenchNoop's JSON text).
_INSERT = (
    "INSERT INTO {table} (name, handler, queue, priority, run_at, created_at, updated_at) "
    "VALUES (%s, %s, %s, 50, now(), now(), now())"
)


def _insert_row(i: int) -> tuple[str, str, str]:
    return ("BenchNoop", f'{{"name":"BenchNoop","args":[{i}],"kwargs":{{}}}}', "bench")


def redis_baselines(url: str, pings: int, zadds: int = 10_000) -> dict[str, Any]:
    import redis  # noqa: PLC0415

    client = redis.Redis.from_url(url)
    key = f"qbbench-{secrets.token_hex(4)}:zadd"
    try:
        for _ in range(100):
            client.ping()
        started = time.perf_counter()
        for _ in range(pings):
            client.ping()
        ping_rate = pings / (time.perf_counter() - started)
        pipe = client.pipeline(transaction=False)
        now = time.time() * 1000
        for i in range(zadds):
            pipe.zadd(key, {str(i): now + i})
        started = time.perf_counter()
        pipe.execute()
        zadd_rate = zadds / (time.perf_counter() - started)
    finally:
        client.delete(key)
        client.close()
    return {"ping_rate": ping_rate, "pipelined_zadd_rate": zadd_rate, "zadds": zadds}


def postgres_claim_loop(url: str, count: int) -> dict[str, Any]:
    import psycopg  # noqa: PLC0415

    table = f"qbbench_raw_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "payload text NOT NULL)"
        )
        try:
            conn.execute(
                f"INSERT INTO {table} (payload) SELECT 'job ' || g "  # noqa: S608
                "FROM generate_series(1, %s) AS g",
                (count,),
            )
            conn.execute(f"ANALYZE {table}")
            claim = (
                f"DELETE FROM {table} WHERE id = (SELECT id FROM {table} "  # noqa: S608
                "ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id, payload"
            )
            done = 0
            started = time.perf_counter()
            while conn.execute(claim).fetchone() is not None:
                done += 1
            elapsed = time.perf_counter() - started
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    return {"claim_loop_rate": done / elapsed, "jobs": done}


def insert_statement(table: str) -> str:
    """The one-row INSERT of the enqueue baselines, into ``table`` (schema-qualified)."""
    return _INSERT.format(table=table)


def insert_rows(conn: Any, insert: str, start: int, count: int) -> None:
    """``count`` one-row INSERTs on an autocommit connection: each its own transaction."""
    for i in range(start, start + count):
        conn.execute(insert, _insert_row(i))


async def ainsert_rows(conn: Any, insert: str, start: int, count: int) -> None:
    """``insert_rows`` on a psycopg ``AsyncConnection``."""
    for i in range(start, start + count):
        await conn.execute(insert, _insert_row(i))


def executemany_rows(conn: Any, insert: str, count: int) -> float:
    """Seconds for ``executemany`` of ``count`` rows in one transaction (the rows are built
    before the clock starts); ``conn`` is not in autocommit."""
    rows = [_insert_row(i) for i in range(count)]
    started = time.perf_counter()
    with conn.cursor() as cursor:
        cursor.executemany(insert, rows)
    conn.commit()
    return time.perf_counter() - started


def postgres_inserts(url: str, table: str, count: int, bulk: int) -> dict[str, Any]:
    """Rows per second into ``table`` (schema-qualified, the shape of queuebox's table):
    ``count`` one-row INSERTs in autocommit (prepared as psycopg does by default, then
    unprepared), the same loop on an ``AsyncConnection``, and ``executemany`` of ``bulk``
    rows in one transaction. The table is emptied after each."""
    import asyncio  # noqa: PLC0415

    import psycopg  # noqa: PLC0415

    insert = insert_statement(table)
    result: dict[str, Any] = {}
    for name, threshold in (("insert_loop_rate", 5), ("insert_loop_unprepared_rate", None)):
        with psycopg.connect(url, autocommit=True, prepare_threshold=threshold) as conn:
            insert_rows(conn, insert, 0, 20)  # warm up (and, by default, prepare)
            started = time.perf_counter()
            insert_rows(conn, insert, 0, count)
            result[name] = count / (time.perf_counter() - started)
            conn.execute(f"TRUNCATE {table}")

    async def async_loop() -> float:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        async with conn:
            await ainsert_rows(conn, insert, 0, 20)
            started = time.perf_counter()
            await ainsert_rows(conn, insert, 0, count)
            rate = count / (time.perf_counter() - started)
            await conn.execute(f"TRUNCATE {table}")
        return rate

    result["async_insert_loop_rate"] = asyncio.run(async_loop())
    with psycopg.connect(url) as conn:  # not autocommit: one transaction
        result["executemany_rate"] = bulk / executemany_rows(conn, insert, bulk)
        conn.execute(f"TRUNCATE {table}")
        conn.commit()
    return result
