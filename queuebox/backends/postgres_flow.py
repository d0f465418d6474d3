"""``FlowControl`` on PostgreSQL: paused queues, and the limits of ``NewJob.limit_key``
enforced inside the claim's transaction, on the server's clock, across every worker.

Under READ COMMITTED one statement cannot both serialize with other claims and count what
they committed: its snapshot is taken before it could wait for them. So while jobs with a
key may run in the claimed queues, a claim is ``claim_limited`` (``sql/postgres.sql``): one
call of the PL/pgSQL function ``<table>_claim_limited`` (schema version 6) that runs two
statements, each on a snapshot of its own. The first tries a transaction-scoped advisory
lock per (table, queue, key) without waiting (a key another claim holds is skipped, as
``SKIP LOCKED`` skips a row); the second takes its snapshot after those locks are held,
counts each locked key's live locks and recent starts, and claims within them. The function
keeps both statements' plans for the session (generic plans), which the same two statements
sent as text paid for on every claim. See ``docs/flow-control.md``.

Otherwise the claim is the plain ``claim`` (one call of ``<table>_claim``, schema version
7), which never takes a keyed job and claims nothing while one may run (one index seek):
only when it comes back empty does the store run ``claim_limited``, and after a claim that
found keys the next one starts with it, until ``claim_limited`` finds no key.
"""

from __future__ import annotations

from typing import Any, ClassVar

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
        # One call of the function migrate_v6 creates: its statements' plans are kept for
        # the session, where the two statements sent as text were planned on every claim.
        rows = self._write_rows("claim_limited", params)
        self._keyed_seen = bool(rows and rows[0]["keys"])
        # A row without a job says only that keys exist (none of them had a slot).
        return [row for row in rows if row["id"] is not None]
