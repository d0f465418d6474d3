"""Raw baselines: what the servers do with no job library in between.

* Redis ``PING`` one at a time: the round-trip limit of one-at-a-time enqueue.
* One pipeline of 10,000 ``ZADD``: the limit of a bulk enqueue.
* PostgreSQL one-statement claim-and-delete, one job per statement, autocommit:
  ``DELETE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

__all__ = ["postgres_claim_loop", "redis_baselines"]


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
