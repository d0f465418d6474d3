"""The worker registry, throughput history and job search of every SQL dialect
(``WorkerRegistry``, ``ThroughputHistory``, ``JobSearch``): what ``queuebox status`` and the
dashboard read.

``SQLMonitor`` runs named queries from a second file per dialect,
``<query_file>_monitor.sql`` (or the dialect's ``monitor_query_file``), kept apart from the
job table's queries. Its tables (``queuebox_workers`` and ``queuebox_minutes`` on SQLite,
``<table>_workers`` and ``<table>_minutes`` on PostgreSQL) are created after the job table's
migrations, under the same connection, by ``monitor_setup``. That script only creates what
is missing (``CREATE ... IF NOT EXISTS``) and never touches the job table, so it needs no
version of its own: it is additive and idempotent, runs on a database of any job-table
version, and leaves the job table's version numbering to the dialect's migrations.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from queuebox.backends.base import (
    RUNTIME_BUCKETS,
    JobPage,
    JobRecord,
    JobSearch,
    JobState,
    MinuteStats,
    ThroughputHistory,
    WorkerInfo,
    WorkerRegistry,
)
from queuebox.backends.sql.queries import is_empty, load_queries
from queuebox.backends.sql.store import SQLStore
from queuebox.json_text import load_json
from queuebox.validation import check_page_limit, check_scan_limit

__all__ = ["PostgresMonitor", "SQLMonitor"]

#: The queries ``SQLMonitor`` needs from its file.
MONITOR_QUERIES = frozenset(
    {
        "monitor_setup",
        "monitor_now",
        "worker_beat",
        "worker_retire",
        "workers_prune",
        "workers_list",
        "stats_add",
        "stats_prune",
        "stats_read",
        "search_jobs",
        *("search_failed", "search_completed", "search_cancelled", "search_running"),
    }
)
#: The search query of each state few jobs are in: it reads only the jobs of that state
#: (through an index of their own where the dialect has one), so that a page of them is found
#: at once among a million others.
_STATE_SEARCHES = {
    JobState.FAILED: "search_failed",
    JobState.COMPLETED: "search_completed",
    JobState.CANCELLED: "search_cancelled",
    JobState.RUNNING: "search_running",
}


class SQLMonitor(SQLStore, WorkerRegistry, ThroughputHistory, JobSearch):
    """Workers, per-minute tallies and job search in tables beside the job table."""

    #: The monitor's queries: a file name under ``queuebox/backends/sql/`` or a ``Path``;
    #: ``None`` means ``<query_file>_monitor``.
    monitor_query_file: ClassVar[str | Path | None] = None

    _monitor_prepared: dict[str, Any] | None = None

    # -- queries -----------------------------------------------------------------------------

    def _monitor_source(self) -> str | Path:
        if self.monitor_query_file is not None:
            return self.monitor_query_file
        if isinstance(self.query_file, Path):
            return self.query_file.with_name(f"{self.query_file.stem}_monitor.sql")
        return f"{self.query_file}_monitor"

    def _monitor_texts(self) -> dict[str, str]:
        texts = load_queries(self._monitor_source())
        missing = sorted(MONITOR_QUERIES - set(texts))
        if missing:
            raise RuntimeError(f"{self._monitor_source()} defines no {', '.join(missing)}")
        return texts

    def _monitor_prepare(self, text: str) -> Any:
        """A monitor query as the driver executes it (``PostgresMonitor`` adds its tables'
        identifiers)."""
        return self._prepare(text)

    def _monitor_query(self, name: str) -> Any:
        prepared = self._monitor_prepared
        if prepared is None:
            texts = self._monitor_texts()
            prepared = {n: self._monitor_prepare(t) for n, t in texts.items() if not is_empty(t)}
            self._monitor_prepared = prepared
        return prepared[name]

    def _monitor_run(self, connection: Any, name: str, params: dict[str, Any] | None = None) -> Any:
        cursor = self._cursor(connection)
        if params is None:
            cursor.execute(self._monitor_query(name))
        else:
            cursor.execute(self._monitor_query(name), self._bind(params))
        return cursor

    def _monitor_read(self, name: str, params: dict[str, Any] | None = None) -> list[Any]:
        with self._session() as connection:
            return self._fetch(self._monitor_run(connection, name, params))

    # -- the tables --------------------------------------------------------------------------

    def _migrate_on(self, connection: Any) -> None:
        super()._migrate_on(connection)
        with self._transaction(connection):
            for statement in self._monitor_texts()["monitor_setup"].split(";\n"):
                if not is_empty(statement):
                    self._cursor(connection).execute(self._monitor_prepare(statement))

    # -- WorkerRegistry ----------------------------------------------------------------------

    def beat(self, worker: WorkerInfo, *, ttl: float, stats: Sequence[MinuteStats] = ()) -> None:
        params = {
            "id": worker.id,
            "host": worker.host,
            "record": worker.to_json(),
            "ttl": self._seconds_param(ttl),
        }
        with self._session() as connection, self._transaction(connection):
            self._monitor_run(connection, "worker_beat", params)
            if stats:
                self._add_stats_on(connection, stats)

    def retire(self, worker_id: str) -> None:
        with self._writing() as connection:
            self._monitor_run(connection, "worker_retire", {"id": str(worker_id)})

    def workers(self) -> list[WorkerInfo]:
        with self._writing() as connection:
            kept = self._seconds_param(self.lost_kept)
            self._monitor_run(connection, "workers_prune", {"kept": kept})
            rows = self._fetch(self._monitor_run(connection, "workers_list"))
        found = []
        for row in rows:
            try:
                info = WorkerInfo.from_json(
                    row["record"], beat_at=self._moment(row["beat_at"]), lost=bool(row["lost"])
                )
            except (TypeError, ValueError, OverflowError):
                continue  # a record written past queuebox: one bad row never hides the rest
            found.append(info)
        return found

    # -- ThroughputHistory -------------------------------------------------------------------

    def add_stats(self, stats: Sequence[MinuteStats]) -> None:
        if not stats:
            return
        with self._session() as connection, self._transaction(connection):
            self._add_stats_on(connection, stats)

    def _add_stats_on(self, connection: Any, stats: Sequence[MinuteStats]) -> None:
        merged: dict[tuple[datetime, str, str], MinuteStats] = {}
        for tally in stats:
            key = (tally.minute, tally.queue, tally.name)
            known = merged.get(key)
            merged[key] = tally if known is None else known.merged(tally)
        # One order for every adder: concurrent transactions lock the rows in the same order.
        for key in sorted(merged):
            tally = merged[key]
            params = {
                "minute": self._checked_time(tally.minute),
                "queue": tally.queue,
                "name": tally.name,
                "succeeded": tally.succeeded,
                "retried": tally.retried,
                "failed": tally.failed,
                "cancelled": tally.cancelled,
                "runtime_counts": [int(n) for n in tally.runtime_counts],
                "runtime_sum": float(tally.runtime_sum),
            }
            self._monitor_run(connection, "stats_add", params)
        retention = self._seconds_param(self.retention)
        self._monitor_run(connection, "stats_prune", {"retention": retention})

    def stats(self, *, since: datetime, queues: Sequence[str] | None = None) -> list[MinuteStats]:
        params = {
            "since": self._checked_time(since),
            "queues": None if queues is None else [str(queue) for queue in queues],
        }
        found = []
        for row in self._monitor_read("stats_read", params):
            try:
                counts = row["runtime_counts"]
                if isinstance(counts, str):
                    counts = load_json(counts)
                if not isinstance(counts, list) or len(counts) != len(RUNTIME_BUCKETS) + 1:
                    raise ValueError("runtime_counts is not one count per bucket")
                tally = MinuteStats(
                    queue=row["queue"],
                    name=row["name"],
                    minute=self._moment(row["minute"]),
                    succeeded=int(row["succeeded"]),
                    retried=int(row["retried"]),
                    failed=int(row["failed"]),
                    cancelled=int(row["cancelled"]),
                    runtime_counts=tuple(int(n) for n in counts),
                    runtime_sum=float(row["runtime_sum"]),
                )
            except (TypeError, ValueError, OverflowError):
                # A row written past queuebox: skipped, as workers() skips one, so that it
                # never takes the dashboard's charts and /metrics down with it.
                continue
            found.append(tally)
        return found

    # -- JobSearch ---------------------------------------------------------------------------

    def search_jobs(
        self,
        *,
        queue: str | None = None,
        state: JobState | None = None,
        name: str | None = None,
        text: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """Windows of the job table walked down its primary key from ``cursor`` (the id to
        go on below). Without filters a window is the page itself. With filters the first
        window is a few pages' worth of rows and each next one eight times larger, up to
        ``scan_limit`` rows: a dense filter fills its page from the first window, a sparse
        one reads ever larger stretches, and any filter stops once it has read
        ``scan_limit`` rows (perhaps a short or empty page, with a cursor to go on from), so
        that a job name or queue that matches nothing does not read a table of a million
        jobs in one request. A filter on a state few jobs are in (failed, completed,
        cancelled, running) walks the jobs of that state alone."""
        check_page_limit(limit)
        scan_limit = check_scan_limit(self.scan_limit)
        before = None if cursor is None else self._job_key(cursor)
        if cursor is not None and before is None:
            raise ValueError(f"cursor {cursor!r} is not one a page of search_jobs gave")
        filtered = any(f is not None for f in (queue, state, name)) or bool(text)
        scan = min(max(scan_limit, limit + 1), 4 * limit + 1) if filtered else limit + 1
        wanted = None if state is None else JobState(state)
        query = "search_jobs" if wanted is None else _STATE_SEARCHES.get(wanted, "search_jobs")
        params = {
            "queue": queue,
            "state": None if wanted is None else wanted.value,
            "name": name,
            "text": text.lower() if text else None,
        }
        found: list[JobRecord] = []
        scanned = 0
        while True:
            want = limit + 1 - len(found)
            rows = self._monitor_read(
                query, {**params, "before": before, "scan": scan, "limit": want}
            )
            window_end, window_size = rows[0]["window_end"], rows[0]["window_size"]
            found += self._records([row for row in rows if row["id"] is not None])
            if len(found) > limit:  # one more than asked: the page ends at its last job
                page = found[:limit]
                return JobPage(page, page[-1].id)
            if window_size < scan:  # the window reached the oldest job
                return JobPage(found, None)
            before, scanned = window_end, scanned + window_size
            if scanned >= scan_limit:  # bounded work, and where to go on
                return JobPage(found, str(window_end))
            scan = min(max(scan_limit, limit + 1), scan * 8)


class PostgresMonitor(SQLMonitor):
    """``SQLMonitor`` with the monitor tables named after the PostgreSQL adapter's job table
    (in its schema): ``{workers}`` is ``<table>_workers`` and ``{minutes}`` ``<table>_minutes``."""

    schema: str | None
    table: str
    _names: dict[str, Any]

    def _monitor_prepare(self, text: str) -> Any:
        from psycopg import sql  # noqa: PLC0415 - only PostgreSQL stores need psycopg

        from queuebox.backends.postgres_support import identifier  # noqa: PLC0415

        names = {
            **self._names,
            "workers": identifier(self.schema, f"{self.table}_workers"),
            "minutes": identifier(self.schema, f"{self.table}_minutes"),
        }
        return sql.SQL(text).format(**names)
