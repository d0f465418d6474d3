-- Named queries of the worker registry, throughput history and job search of the
-- PostgreSQL dialect (queuebox/backends/sql/monitor.py); see docs/sql-monitor.md.
--
-- Placeholders in braces are identifiers filled in with psycopg.sql, as in postgres.sql:
--   {jobs}      the jobs table; {workers} and {minutes} the registry and history tables,
--               named after it (<table>_workers, <table>_minutes) in the same schema
-- %(name)s are bound parameters; list parameters are arrays; durations are seconds.
--
-- These tables carry no schema version: monitor_setup only ever creates what is missing
-- (CREATE ... IF NOT EXISTS) and never changes the job table, so it runs on the first use of
-- a store, on a database of any job-table version, and the job table's version numbering
-- (migrate_vN in postgres.sql) stays its own.

-- fragment: state
-- A job's state on the store's clock (the same rule as postgres.sql's fragment state).
CASE WHEN job.completed_at IS NOT NULL THEN 'completed'
     WHEN job.failed_at IS NOT NULL THEN 'failed'
     WHEN job.cancelled_at IS NOT NULL
          AND (job.locked_at IS NULL OR job.lock_expires_at <= now()) THEN 'cancelled'
     WHEN job.locked_at IS NOT NULL THEN 'running'
     WHEN job.run_at <= now() THEN 'ready'
     ELSE 'scheduled' END

-- name: monitor_setup
-- Under the migrations' advisory lock: two processes creating a table at once would clash.
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext({migrate_key}));
-- One row per worker process: its record as opaque JSON text (WorkerInfo.to_json), its last
-- beat and the ttl it gave.
CREATE TABLE IF NOT EXISTS {workers} (
    id text PRIMARY KEY,
    host text NOT NULL,
    record text NOT NULL,
    beat_at timestamptz NOT NULL,
    ttl double precision NOT NULL
);
-- One row per minute, queue and job name.
CREATE TABLE IF NOT EXISTS {minutes} (
    minute timestamptz NOT NULL,
    queue text NOT NULL,
    name text NOT NULL,
    succeeded bigint NOT NULL,
    retried bigint NOT NULL,
    failed bigint NOT NULL,
    cancelled bigint NOT NULL,
    runtime_counts bigint[] NOT NULL,
    runtime_sum double precision NOT NULL,
    PRIMARY KEY (minute, queue, name)
)

-- name: monitor_now
SELECT now() AS now

-- name: worker_beat
INSERT INTO {workers} AS w (id, host, record, beat_at, ttl)
VALUES (%(id)s, %(host)s, %(record)s, now(), %(ttl)s)
ON CONFLICT (id) DO UPDATE SET
    host = excluded.host, record = excluded.record, beat_at = excluded.beat_at,
    ttl = excluded.ttl

-- name: worker_retire
DELETE FROM {workers} WHERE id = %(id)s

-- name: workers_prune
-- Workers silent for longer than their ttl and then lost_kept (%(kept)s) more.
DELETE FROM {workers}
WHERE beat_at + make_interval(secs => ttl + %(kept)s) < now()

-- name: workers_list
SELECT id, host, record, beat_at, beat_at + make_interval(secs => ttl) < now() AS lost
FROM {workers}
ORDER BY host COLLATE "C", id COLLATE "C"

-- name: stats_add
-- Adds one tally to its minute's row; the upsert locks the row, so concurrent adders of one
-- minute add one after the other (the adapter sorts a batch's rows: no deadlock).
INSERT INTO {minutes} AS m (
    minute, queue, name, succeeded, retried, failed, cancelled, runtime_counts, runtime_sum
)
VALUES (
    %(minute)s, %(queue)s, %(name)s, %(succeeded)s, %(retried)s, %(failed)s, %(cancelled)s,
    %(runtime_counts)s::bigint[], %(runtime_sum)s
)
ON CONFLICT (minute, queue, name) DO UPDATE SET
    succeeded = m.succeeded + excluded.succeeded,
    retried = m.retried + excluded.retried,
    failed = m.failed + excluded.failed,
    cancelled = m.cancelled + excluded.cancelled,
    runtime_counts = ARRAY(
        SELECT mine + theirs
        FROM unnest(m.runtime_counts, excluded.runtime_counts) WITH ORDINALITY
             AS bucket(mine, theirs, n)
        ORDER BY n
    ),
    runtime_sum = m.runtime_sum + excluded.runtime_sum

-- name: stats_prune
-- Minutes older than the retention; the primary key starts with minute, so this is a range.
DELETE FROM {minutes} WHERE minute < now() - make_interval(secs => %(retention)s)

-- name: stats_read
SELECT * FROM {minutes}
WHERE minute >= %(since)s
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
ORDER BY minute, queue COLLATE "C", name COLLATE "C"

-- fragment: search_window
-- The rest of one window of the search, over the CTE "scanned" (its rows newest first): the
-- filters over that window. Every row answers also the window's lowest id and size, so that
-- the caller knows where to go on when the window held fewer matches than asked; a window
-- without matches answers one row of NULL job columns.
span AS (SELECT MIN(id) AS window_end, COUNT(*) AS window_size FROM scanned),
picked AS (
    SELECT job.*, {% state %} AS state
    FROM scanned AS job
    WHERE (%(queue)s::text IS NULL OR job.queue = %(queue)s::text)
      AND (%(name)s::text IS NULL OR job.name = %(name)s::text)
      AND (%(text)s::text IS NULL OR strpos(lower(job.handler), %(text)s::text) > 0
           OR strpos(lower(coalesce(job.last_error, '')), %(text)s::text) > 0)
)
SELECT picked.*, span.window_end, span.window_size
FROM span LEFT JOIN picked ON (%(state)s::text IS NULL OR picked.state = %(state)s::text)
ORDER BY picked.id DESC
LIMIT %(limit)s

-- fragment: newest_below_cursor
-- The condition and order of a window's rows: below the cursor, newest first, at most scan.
id < coalesce(%(before)s::bigint, 9223372036854775807)
ORDER BY id DESC LIMIT %(scan)s

-- name: search_jobs
-- One window of the search, newest first: at most %(scan)s rows below the cursor
-- (%(before)s, or NULL from the top), walked down the primary key (a keyset page: no OFFSET,
-- so a page deep in the list costs what the first costs), then the filters over that window.
WITH scanned AS MATERIALIZED (
    SELECT * FROM {jobs} WHERE {% newest_below_cursor %}
),
{% search_window %}

-- name: search_failed
-- search_jobs over the failed jobs alone: a state few jobs are in is read in one statement
-- (a failed job then kept as completed is left out by the state filter).
WITH scanned AS MATERIALIZED (
    SELECT * FROM {jobs} WHERE failed_at IS NOT NULL AND {% newest_below_cursor %}
),
{% search_window %}

-- name: search_completed
-- search_jobs over the completed (kept) jobs alone.
WITH scanned AS MATERIALIZED (
    SELECT * FROM {jobs} WHERE completed_at IS NOT NULL AND {% newest_below_cursor %}
),
{% search_window %}

-- name: search_cancelled
-- search_jobs over the jobs with a cancellation (a running job asked to stop is left out by
-- the state filter until its run ends).
WITH scanned AS MATERIALIZED (
    SELECT * FROM {jobs} WHERE cancelled_at IS NOT NULL AND {% newest_below_cursor %}
),
{% search_window %}

-- name: search_running
-- search_jobs over the locked jobs (as many as workers run at once).
WITH scanned AS MATERIALIZED (
    SELECT * FROM {jobs} WHERE locked_at IS NOT NULL AND {% newest_below_cursor %}
),
{% search_window %}
