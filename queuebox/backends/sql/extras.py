"""Optional store interfaces implemented once for every SQL dialect: a dialect lists the
mixins it offers beside ``SQLStore`` (``class MyStore(SQLRecurring, SQLStore)``), and its
query file defines the queries each mixin names in ``sql_queries``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from queuebox.backends.base import (
    Cancellation,
    CancelOutcome,
    JobRecord,
    NewJob,
    PipelinedClaims,
    RecurringStore,
)
from queuebox.backends.sql.store import SQLStore

__all__ = ["SQLCancellation", "SQLPipelinedClaims", "SQLRecurring"]


class SQLPipelinedClaims(SQLStore, PipelinedClaims):
    """A batch's acknowledgements and the next claim in one transaction: one commit instead
    of two. Worth it where a commit is the cost (SQLite syncs the file at each one); a
    dialect whose single writes need no transaction of their own (autocommit) would pay a
    BEGIN and a COMMIT round trip more than the two plain calls, and should not declare it."""

    def complete_and_claim(
        self,
        acks: Sequence[tuple[str, str]],
        *,
        keep: bool = False,
        worker_id: str,
        queue: str,
        limit: int,
        lease: float,
    ) -> tuple[list[bool], list[JobRecord]]:
        if limit < 1:
            return self.complete_many(acks, keep=keep), []
        params = self._claim_params(worker_id, [queue], limit, lease)
        # A failed claim rolls the acknowledgements back too: the caller still holds them
        # and sends them again, as after a failed complete_many.
        with self._in_transaction():
            results = self.complete_many(acks, keep=keep)
            rows = self._claim_rows(params)
        return results, self._claimed(rows)

    def wait_and_claim(
        self, worker_id: str, queue: str, *, limit: int, lease: float, timeout: float
    ) -> list[JobRecord]:
        # SQL has no blocking claim: the wait is wait_for_work's (a change watch), and a
        # wake-up that finds nothing claimable returns [] like a timeout.
        self.wait_for_work([queue], timeout)
        return self.claim(worker_id, [queue], limit=limit, lease=lease)


class SQLRecurring(SQLStore, RecurringStore):
    """Recurring ticks in a table of their own, upserted in the job's transaction."""

    sql_queries: ClassVar[frozenset[str]] = frozenset({"record_tick", "recurring_ticks"})

    def schedule_tick(
        self, key: str, tick: datetime, job: NewJob, *, store: bool = True
    ) -> JobRecord | None:
        """Record ``tick`` for ``key`` and store ``job``, in one transaction.

        ``record_tick`` returns a row only when it moved the tick forward; its upsert locks
        the tick's row until commit, so concurrent calls for one key run one after the
        other and each sees the tick the previous one recorded.
        """
        params = {"key": key, "tick": self._checked_time(tick)}
        with self._session() as connection, self._transaction(connection):
            if not self._rows(connection, "record_tick", params) or not store:
                return None
            [result] = self._insert_on(connection, [job])
            return result.record if result.stored else None

    def recurring_ticks(self) -> dict[str, datetime]:
        rows = self._read("recurring_ticks")
        return {row["key"]: self._moment(row["last_tick"]) for row in rows}


class SQLCancellation(SQLStore, Cancellation):
    """Cancellation through the ``cancelled_at`` column: ``cancel`` is one statement that
    cancels a waiting job (or one whose lock lapsed) at once and marks a running one."""

    sql_queries: ClassVar[frozenset[str]] = frozenset(
        {"cancel", "cancel_requested", "mark_cancelled"}
    )

    def cancel(self, job_id: str) -> CancelOutcome:
        key = self._job_key(job_id)
        if key is None:
            return CancelOutcome.NOT_FOUND
        rows = self._write_rows("cancel", {"id": key})
        if rows:
            return CancelOutcome(rows[0]["outcome"])
        # Nothing changed: the job had ended (or was cancelled) already, or never existed.
        return CancelOutcome.FINISHED if self._read("get", {"id": key}) else CancelOutcome.NOT_FOUND

    def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        keys = [key for key in map(self._job_key, job_ids) if key is not None]
        if not keys:
            return set()
        return {str(row["id"]) for row in self._read("cancel_requested", {"ids": keys})}

    def mark_cancelled(self, job_id: str, lock_token: str, *, error: str | None = None) -> bool:
        return self._owned_write("mark_cancelled", job_id, lock_token, error=error)
