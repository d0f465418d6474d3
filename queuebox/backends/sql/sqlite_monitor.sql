-- Named queries of the worker registry, throughput history and job search of the SQLite
-- dialect (queuebox/backends/sql/monitor.py); see docs/sql-monitor.md.
--
-- Times are INTEGER microseconds since 1970 on SQLite's clock, as in sqlite.sql; durations
-- (:ttl, :kept, :retention) are microseconds too; list parameters are JSON arrays.
--
-- These tables carry no schema version: monitor_setup only ever creates what is missing
-- (CREATE ... IF NOT EXISTS) and never changes the job table, so it runs on every new
-- connection's first use, on a database of any job-table version, and the job table's
-- version numbering (migrate_vN in sqlite.sql) stays its own.

-- fragment: store_now
CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000

-- fragment: state
-- A job's state on the store's clock (the same rule as sqlite.sql's fragment state).
CASE WHEN job.completed_at IS NOT NULL THEN 'completed'
     WHEN job.failed_at IS NOT NULL THEN 'failed'
     WHEN job.cancelled_at IS NOT NULL
          AND (job.locked_at IS NULL OR job.lock_expires_at <= clock.now) THEN 'cancelled'
     WHEN job.locked_at IS NOT NULL THEN 'running'
     WHEN job.run_at <= clock.now THEN 'ready'
     ELSE 'scheduled' END

-- name: monitor_setup
-- One row per worker process: its record as opaque JSON text (WorkerInfo.to_json), its last
-- beat and the ttl it gave.
CREATE TABLE IF NOT EXISTS queuebox_workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    record TEXT NOT NULL,
    beat_at INTEGER NOT NULL,
    ttl INTEGER NOT NULL
) STRICT;
-- One row per minute, queue and job name; runtime_counts is a JSON array of integers.
CREATE TABLE IF NOT EXISTS queuebox_minutes (
    minute INTEGER NOT NULL,
    queue TEXT NOT NULL,
    name TEXT NOT NULL,
    succeeded INTEGER NOT NULL,
    retried INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    cancelled INTEGER NOT NULL,
    runtime_counts TEXT NOT NULL,
    runtime_sum REAL NOT NULL,
    PRIMARY KEY (minute, queue, name)
) STRICT, WITHOUT ROWID

-- name: monitor_now
SELECT {% store_now %} AS now

-- name: worker_beat
INSERT INTO queuebox_workers (id, host, record, beat_at, ttl)
VALUES (:id, :host, :record, {% store_now %}, :ttl)
ON CONFLICT (id) DO UPDATE SET
    host = excluded.host, record = excluded.record, beat_at = excluded.beat_at,
    ttl = excluded.ttl

-- name: worker_retire
DELETE FROM queuebox_workers WHERE id = :id

-- name: workers_prune
-- Workers silent for longer than their ttl and then lost_kept (:kept) more.
DELETE FROM queuebox_workers WHERE beat_at + ttl + :kept < {% store_now %}

-- name: workers_list
SELECT id, host, record, beat_at, beat_at + ttl < {% store_now %} AS lost
FROM queuebox_workers
ORDER BY host, id

-- name: stats_add
-- Adds one tally to its minute's row (the write lock of the transaction serializes adders).
INSERT INTO queuebox_minutes (
    minute, queue, name, succeeded, retried, failed, cancelled, runtime_counts, runtime_sum
)
VALUES (
    :minute, :queue, :name, :succeeded, :retried, :failed, :cancelled, :runtime_counts,
    :runtime_sum
)
ON CONFLICT (minute, queue, name) DO UPDATE SET
    succeeded = succeeded + excluded.succeeded,
    retried = retried + excluded.retried,
    failed = failed + excluded.failed,
    cancelled = cancelled + excluded.cancelled,
    -- Bucket by bucket, in bucket order (an aggregate over an ordered subquery keeps it).
    runtime_counts = (
        SELECT json_group_array(total) FROM (
            SELECT mine.value + theirs.value AS total
            FROM json_each(queuebox_minutes.runtime_counts) AS mine
            JOIN json_each(excluded.runtime_counts) AS theirs ON theirs.key = mine.key
            ORDER BY mine.key
        )
    ),
    runtime_sum = runtime_sum + excluded.runtime_sum

-- name: stats_prune
-- Minutes older than the retention; the primary key starts with minute, so this is a range.
DELETE FROM queuebox_minutes WHERE minute < {% store_now %} - :retention

-- name: stats_read
SELECT * FROM queuebox_minutes
WHERE minute >= :since
  AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
ORDER BY minute, queue, name

-- fragment: search_window
-- The rest of one window of the search, over the CTE "scanned" (its rows newest first) and
-- "clock": the filters over that window. Every row answers also the window's lowest id and
-- size, so that the caller knows where to go on when the window held fewer matches than
-- asked; a window without matches answers one row of NULL job columns.
span AS (SELECT MIN(id) AS window_end, COUNT(*) AS window_size FROM scanned),
picked AS (
    SELECT job.*, {% state %} AS state
    FROM scanned AS job, clock
    WHERE (:queue IS NULL OR job.queue = :queue)
      AND (:name IS NULL OR job.name = :name)
      AND (:text IS NULL OR instr(lower(job.handler), :text) > 0
           OR instr(lower(coalesce(job.last_error, '')), :text) > 0)
)
SELECT picked.*, span.window_end, span.window_size
FROM span LEFT JOIN picked ON (:state IS NULL OR picked.state = :state)
ORDER BY picked.id DESC
LIMIT :limit

-- fragment: newest_below_cursor
-- The condition and order of a window's rows: below the cursor, newest first, at most scan.
id < coalesce(:before, 9223372036854775807)
ORDER BY id DESC LIMIT :scan

-- name: search_jobs
-- One window of the search, newest first: at most :scan rows below the cursor (:before, or
-- NULL from the top), walked down the primary key (a keyset page: no OFFSET, so a page deep
-- in the list costs what the first costs), then the filters over that window.
WITH clock(now) AS (SELECT {% store_now %}),
scanned AS (
    SELECT * FROM queuebox_jobs WHERE {% newest_below_cursor %}
),
{% search_window %}

-- name: search_failed
-- search_jobs over the failed jobs alone (the partial index queuebox_jobs_failed): a state
-- few jobs are in is found without reading the others. (A failed job that was then kept as
-- completed is in the index and left out by the state filter.)
WITH clock(now) AS (SELECT {% store_now %}),
scanned AS (
    SELECT * FROM queuebox_jobs WHERE failed_at IS NOT NULL AND {% newest_below_cursor %}
),
{% search_window %}

-- name: search_completed
-- search_jobs over the completed (kept) jobs alone (queuebox_jobs_completed).
WITH clock(now) AS (SELECT {% store_now %}),
scanned AS (
    SELECT * FROM queuebox_jobs WHERE completed_at IS NOT NULL AND {% newest_below_cursor %}
),
{% search_window %}

-- name: search_cancelled
-- search_jobs over the jobs with a cancellation (queuebox_jobs_cancelled); a running job
-- asked to stop is there too and left out by the state filter until its run ends.
WITH clock(now) AS (SELECT {% store_now %}),
scanned AS (
    SELECT * FROM queuebox_jobs WHERE cancelled_at IS NOT NULL AND {% newest_below_cursor %}
),
{% search_window %}

-- name: search_running
-- search_jobs over the locked jobs, read through the lock index queuebox_jobs_locks and
-- sorted by id (they are as many as workers run at once). Left to itself the planner walks
-- the whole table down its primary key instead, to spare the sort.
WITH clock(now) AS (SELECT {% store_now %}),
scanned AS (
    SELECT * FROM queuebox_jobs INDEXED BY queuebox_jobs_locks
    WHERE locked_at IS NOT NULL AND {% newest_below_cursor %}
),
{% search_window %}
