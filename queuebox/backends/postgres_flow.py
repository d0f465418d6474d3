"""``FlowControl`` on PostgreSQL: paused queues, and the limits of ``NewJob.limit_key``
enforced inside the claim's transaction, on the server's clock, across every worker.

Under READ COMMITTED one statement cannot both serialize with other claims and count what
they committed: its snapshot is taken before it could wait for them. So while jobs with a
key may run in the claimed queues, a claim is ``claim_limited`` (``sql/postgres.sql``): two
statements sent as one string in one round trip, which PostgreSQL runs as one implicit
transaction. The first tries a transaction-scoped advisory lock per (table, queue, key)
without waiting (a key another claim holds is skipped, as ``SKIP LOCKED`` skips a row); the
second takes its own snapshot after those locks are held, counts each locked key's live
locks and recent starts, and claims within them. See ``docs/flow-control.md``.

Otherwise the claim is the plain one-statement ``claim``, which never takes a keyed job and
claims nothing while one may run (one index seek): only when it comes back empty does the
store run ``claim_limited``, and after a claim that found keys the next one starts with it,
until ``claim_limited`` finds no key.
"""

from __future__ import annotations

from typing import Any, ClassVar

import psycopg
from psycopg.rows import dict_row

from queuebox.backends.base import Row
from queuebox.backends.sql.flow import SQLFlowControl

__all__ = ["PostgresFlowControl"]


class PostgresFlowControl(SQLFlowControl):
    """``SQLFlowControl`` with the PostgreSQL claim: a per-key advisory lock before the count."""

    sql_queries: ClassVar[frozenset[str]] = frozenset({"lock_limit_keys", "claim_held_keys"})

    #: Whether the last claim found jobs with a key (then the next one starts with them).
    _keyed_seen: bool = False

    def _claim_query(self, params: dict[str, Any]) -> str:
        # The plain claim checks for keyed jobs itself (it takes nothing while one may run):
        # no extra round trip before it.
        return "claim"

    def _claim_rows(self, params: dict[str, Any]) -> list[Row]:
        # Every claim of the SQL base goes through here (claim, and a fused claim such as
        # SQLPipelinedClaims.complete_and_claim), so each one keeps the limits.
        if not self._keyed_seen:
            rows = super()._claim_rows(params)
            if rows:
                return rows
        return self._claim_limited(params)

    def _claim_limited(self, params: dict[str, Any]) -> list[Row]:
        with self._session() as connection:
            # Client-side binding lets one execute carry both statements (server-side
            # binding takes one statement per message); psycopg quotes every value.
            cursor = psycopg.ClientCursor(connection, row_factory=dict_row)
            cursor.execute(self._queries["claim_limited"], self._bind(params))
            locked = cursor.fetchone()
            self._keyed_seen = bool(locked and locked["keys"])
            cursor.nextset()
            return self._fetch(cursor)
