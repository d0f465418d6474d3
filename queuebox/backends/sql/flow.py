"""``SQLFlowControl``: paused queues and per-key limits for the SQL dialects.

The limits are enforced by the dialect's ``claim`` query itself (see ``docs/flow-control.md``):
jobs without a limit key are claimed through an index that holds only them, jobs with one
through a bounded walk of their keys, each allowed no more jobs than its free run slots
(live locks, counted from the job table) and its starts left in the rate window. This mixin
adds the paused-queue table's three statements.
"""

from __future__ import annotations

from typing import Any, ClassVar

from queuebox.backends.base import FlowControl
from queuebox.backends.sql.store import SQLStore

__all__ = ["SQLFlowControl"]


class SQLFlowControl(SQLStore, FlowControl):
    """Pause and resume through the ``queuebox_paused`` table, read by every claim."""

    sql_queries: ClassVar[frozenset[str]] = frozenset(
        {"pause", "resume", "paused_queues", "any_limited", "claim_limited"}
    )

    def _claim_query(self, params: dict[str, Any]) -> str:
        # The plain claim never takes a job with a key (its walk reads an index without
        # them), so a key that appears after this check only waits for the next claim.
        if self._read("any_limited")[0]["found"]:
            return "claim_limited"
        return "claim"

    def pause(self, queue: str) -> bool:
        return bool(self._write_rows("pause", {"queue": _queue(queue)}))

    def resume(self, queue: str) -> bool:
        return bool(self._write_rows("resume", {"queue": _queue(queue)}))

    def paused_queues(self) -> set[str]:
        return {row["queue"] for row in self._read("paused_queues")}


def _queue(queue: object) -> str:
    if not isinstance(queue, str) or not queue:
        raise ValueError(f"a queue name is a non-empty string, not {queue!r}")
    return queue
