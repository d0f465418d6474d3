-- Named queries of the SQLite store (queuebox/backends/sqlite.py); see docs/sqlite.md.
--
-- Times are INTEGER microseconds since 1970-01-01 UTC, taken from SQLite's clock:
--   CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000
-- julianday('now') holds whole milliseconds, so rounding to the millisecond is exact; the
-- factor 1000 leaves room for the microseconds of a caller's absolute run_at. SQLite
-- fixes 'now' for the whole of one statement, so every use inside a statement agrees.
--
-- A job is "waiting" (scheduled or ready) when it is unlocked and neither failed nor
-- completed. Every query that looks for waiting jobs spells out the predicate of the
-- partial index queuebox_jobs_waiting exactly, so that the planner can use that index.

-- name: enable_wal
PRAGMA journal_mode = WAL

-- name: schema_version
PRAGMA user_version

-- name: data_version
-- Changes whenever another connection commits to the file.
PRAGMA data_version

-- name: begin_immediate
BEGIN IMMEDIATE

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: create_jobs_table
CREATE TABLE IF NOT EXISTS queuebox_jobs (
    -- AUTOINCREMENT: an id is never handed out twice, even after the newest job is deleted.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    handler TEXT NOT NULL,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,
    run_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    locked_at INTEGER,
    locked_by TEXT,
    lock_expires_at INTEGER,
    lock_token TEXT,
    last_error TEXT,
    failed_at INTEGER,
    completed_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    -- Set while a unique job waits or runs; cleared when it fails or is kept as completed.
    unique_key TEXT
) STRICT

-- name: create_unique_index
CREATE UNIQUE INDEX IF NOT EXISTS queuebox_jobs_unique
ON queuebox_jobs (queue, unique_key) WHERE unique_key IS NOT NULL

-- name: create_recurring_table
-- The last tick each recurring job reached, so that every tick is stored once.
CREATE TABLE IF NOT EXISTS queuebox_recurring (
    key TEXT PRIMARY KEY,
    last_tick INTEGER NOT NULL
) STRICT

-- name: create_waiting_index
-- The claim index: only waiting jobs, so running, failed and completed rows cost nothing.
-- Claim walks it by (queue, priority) groups, each of which is ordered by (run_at, id), so
-- the due jobs of a group are a prefix of it.
CREATE INDEX IF NOT EXISTS queuebox_jobs_waiting
ON queuebox_jobs (queue, priority, run_at, id)
WHERE locked_at IS NULL AND failed_at IS NULL AND completed_at IS NULL

-- name: create_locks_index
-- Running jobs by lock expiry: finds the expired locks to reclaim without a scan.
CREATE INDEX IF NOT EXISTS queuebox_jobs_locks
ON queuebox_jobs (lock_expires_at)
WHERE locked_at IS NOT NULL

-- name: set_schema_version_1
PRAGMA user_version = 1

-- name: now
SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000 AS now

-- name: insert_job
WITH clock(now) AS (
    SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000
)
INSERT INTO queuebox_jobs
    (name, handler, queue, priority, run_at, created_at, updated_at, unique_key)
SELECT :name, :handler, :queue, :priority, COALESCE(:run_at, now + :delay_us), now, now,
       :unique_key
FROM clock WHERE true
-- A held unique key inserts nothing (and returns no row); the caller reads the holder.
ON CONFLICT (queue, unique_key) WHERE unique_key IS NOT NULL DO NOTHING
RETURNING *, CASE WHEN run_at <= created_at THEN 'ready' ELSE 'scheduled' END AS state

-- name: get_job_by_unique_key
WITH clock(now) AS (
    SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000
)
SELECT job.*,
       CASE WHEN locked_at IS NOT NULL THEN 'running'
            WHEN run_at <= clock.now THEN 'ready'
            ELSE 'scheduled' END AS state
FROM queuebox_jobs AS job, clock
WHERE job.queue = :queue AND job.unique_key = :unique_key

-- name: record_tick
-- Returns a row only when this call moved the tick forward (or recorded the first one).
INSERT INTO queuebox_recurring (key, last_tick) VALUES (:key, :tick)
ON CONFLICT (key) DO UPDATE SET last_tick = excluded.last_tick
WHERE excluded.last_tick > queuebox_recurring.last_tick
RETURNING key

-- name: recurring_ticks
SELECT key, last_tick FROM queuebox_recurring ORDER BY key

-- name: claim_jobs
-- One statement: pick the best :limit claimable jobs and lock them. :queues is a JSON
-- array of queue names, or NULL for every queue. A plain ORDER BY priority, run_at over
-- waiting jobs would scan every job not yet due (or of another queue) that sorts ahead of
-- the due ones; instead it visits each (queue, priority) group that holds a waiting job
-- with one index seek, and reads at most :limit due jobs from each.
WITH RECURSIVE
clock(now) AS (
    SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000
),
named_queue(queue) AS (
    SELECT DISTINCT value FROM json_each(:queues) WHERE :queues IS NOT NULL
),
-- Every queue holding a waiting job, one index seek each (a "skip scan").
any_queue(queue) AS (
    SELECT MIN(queue) FROM queuebox_jobs
    WHERE :queues IS NULL
      AND locked_at IS NULL AND failed_at IS NULL AND completed_at IS NULL
    UNION ALL
    SELECT (
        SELECT MIN(queue) FROM queuebox_jobs
        WHERE queue > any_queue.queue
          AND locked_at IS NULL AND failed_at IS NULL AND completed_at IS NULL
    )
    FROM any_queue WHERE any_queue.queue IS NOT NULL
),
chosen_queue(queue) AS (
    SELECT queue FROM named_queue
    UNION ALL
    SELECT queue FROM any_queue WHERE queue IS NOT NULL
),
-- Every (queue, priority) group of waiting jobs in the chosen queues.
grp(queue, priority) AS (
    SELECT queue, (
        SELECT MIN(priority) FROM queuebox_jobs
        WHERE queue = chosen_queue.queue
          AND locked_at IS NULL AND failed_at IS NULL AND completed_at IS NULL
    )
    FROM chosen_queue
    UNION ALL
    SELECT queue, (
        SELECT MIN(priority) FROM queuebox_jobs
        WHERE queue = grp.queue AND priority > grp.priority
          AND locked_at IS NULL AND failed_at IS NULL AND completed_at IS NULL
    )
    FROM grp WHERE grp.priority IS NOT NULL
),
candidate(id, priority, run_at) AS (
    SELECT job.id, job.priority, job.run_at
    FROM grp, queuebox_jobs AS job
    WHERE grp.priority IS NOT NULL AND job.id IN (
        SELECT id FROM queuebox_jobs
        WHERE queue = grp.queue AND priority = grp.priority
          AND run_at <= (SELECT now FROM clock)
          AND locked_at IS NULL AND failed_at IS NULL AND completed_at IS NULL
        ORDER BY run_at, id
        LIMIT :limit
    )
    UNION ALL
    -- Expired locks: running jobs whose worker stopped renewing them.
    SELECT id, priority, run_at FROM queuebox_jobs
    WHERE locked_at IS NOT NULL AND lock_expires_at <= (SELECT now FROM clock)
      AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
)
UPDATE queuebox_jobs
SET attempts = attempts + 1,
    -- The right-hand sides see the row as it was, so this reads the lost worker's lock;
    -- the text is base.reclaim_note's (datetime.isoformat of an aware UTC time).
    last_error = CASE WHEN locked_by IS NULL THEN last_error ELSE
        'WorkerLost: the lock held by worker ' || locked_by || ' expired at '
        || strftime('%Y-%m-%dT%H:%M:%S', lock_expires_at / 1000000, 'unixepoch')
        || CASE WHEN lock_expires_at % 1000000 = 0 THEN ''
                ELSE printf('.%06d', lock_expires_at % 1000000) END
        || '+00:00 before the job finished; the job was claimed again'
    END,
    locked_at = (SELECT now FROM clock),
    locked_by = :worker_id,
    lock_expires_at = (SELECT now FROM clock) + :lease_us,
    -- :nonce is fresh random text from Python's secrets module for every claim; the id
    -- makes each job's token distinct within one claim.
    lock_token = :nonce || '.' || id,
    updated_at = (SELECT now FROM clock)
WHERE id IN (SELECT id FROM candidate ORDER BY priority, run_at, id LIMIT :limit)
RETURNING *, 'running' AS state

-- name: next_due
-- Microseconds until the first waiting job of :queues (JSON array, or NULL for all) is
-- due or the first lock expires; NULL when there is neither. Same walk as claim_jobs.
WITH RECURSIVE
clock(now) AS (
    SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000
),
named_queue(queue) AS (
    SELECT DISTINCT value FROM json_each(:queues) WHERE :queues IS NOT NULL
),
any_queue(queue) AS (
    SELECT MIN(queue) FROM queuebox_jobs
    WHERE :queues IS NULL
      AND locked_at IS NULL AND failed_at IS NULL AND completed_at IS NULL
    UNION ALL
    SELECT (
        SELECT MIN(queue) FROM queuebox_jobs
        WHERE queue > any_queue.queue
          AND locked_at IS NULL AND failed_at IS NULL AND completed_at IS NULL
    )
    FROM any_queue WHERE any_queue.queue IS NOT NULL
),
chosen_queue(queue) AS (
    SELECT queue FROM named_queue
    UNION ALL
    SELECT queue FROM any_queue WHERE queue IS NOT NULL
),
grp(queue, priority) AS (
    SELECT queue, (
        SELECT MIN(priority) FROM queuebox_jobs
        WHERE queue = chosen_queue.queue
          AND locked_at IS NULL AND failed_at IS NULL AND completed_at IS NULL
    )
    FROM chosen_queue
    UNION ALL
    SELECT queue, (
        SELECT MIN(priority) FROM queuebox_jobs
        WHERE queue = grp.queue AND priority > grp.priority
          AND locked_at IS NULL AND failed_at IS NULL AND completed_at IS NULL
    )
    FROM grp WHERE grp.priority IS NOT NULL
),
due(at) AS (
    SELECT (
        SELECT MIN(run_at) FROM queuebox_jobs
        WHERE queue = grp.queue AND priority = grp.priority
          AND locked_at IS NULL AND failed_at IS NULL AND completed_at IS NULL
    )
    FROM grp WHERE grp.priority IS NOT NULL
    UNION ALL
    SELECT MIN(lock_expires_at) FROM queuebox_jobs
    WHERE locked_at IS NOT NULL
      AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
)
SELECT MIN(at) - (SELECT now FROM clock) AS wait_us FROM due

-- name: delete_locked_job
DELETE FROM queuebox_jobs WHERE id = :id AND lock_token = :token

-- name: complete_keep
UPDATE queuebox_jobs
SET completed_at = CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000,
    updated_at = CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000,
    locked_at = NULL, locked_by = NULL, lock_expires_at = NULL, lock_token = NULL,
    unique_key = NULL
WHERE id = :id AND lock_token = :token

-- name: reschedule
UPDATE queuebox_jobs
SET run_at = CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000
             + :delay_us,
    updated_at = CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000,
    last_error = :error,
    locked_at = NULL, locked_by = NULL, lock_expires_at = NULL, lock_token = NULL
WHERE id = :id AND lock_token = :token

-- name: fail_keep
UPDATE queuebox_jobs
SET failed_at = CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000,
    updated_at = CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000,
    last_error = :error,
    locked_at = NULL, locked_by = NULL, lock_expires_at = NULL, lock_token = NULL,
    unique_key = NULL
WHERE id = :id AND lock_token = :token

-- name: release
-- run_at is left alone: the job is due again at once, in its old place in the order.
UPDATE queuebox_jobs
SET attempts = MAX(attempts - 1, 0),
    updated_at = CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000,
    locked_at = NULL, locked_by = NULL, lock_expires_at = NULL, lock_token = NULL
WHERE id = :id AND lock_token = :token

-- name: extend
UPDATE queuebox_jobs
SET lock_expires_at = CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)
                      * 1000 + :lease_us,
    updated_at = CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000
WHERE id = :id AND lock_token = :token

-- name: get_job
WITH clock(now) AS (
    SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000
)
SELECT job.*,
       CASE WHEN completed_at IS NOT NULL THEN 'completed'
            WHEN failed_at IS NOT NULL THEN 'failed'
            WHEN locked_at IS NOT NULL THEN 'running'
            WHEN run_at <= clock.now THEN 'ready'
            ELSE 'scheduled' END AS state
FROM queuebox_jobs AS job, clock
WHERE job.id = :id

-- name: list_jobs
-- :queues and :states are JSON arrays, or NULL for all.
WITH clock(now) AS (
    SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000
),
job_state AS (
    SELECT job.*,
           CASE WHEN completed_at IS NOT NULL THEN 'completed'
                WHEN failed_at IS NOT NULL THEN 'failed'
                WHEN locked_at IS NOT NULL THEN 'running'
                WHEN run_at <= clock.now THEN 'ready'
                ELSE 'scheduled' END AS state
    FROM queuebox_jobs AS job, clock
    WHERE :queues IS NULL OR job.queue IN (SELECT value FROM json_each(:queues))
)
SELECT * FROM job_state
WHERE :states IS NULL OR state IN (SELECT value FROM json_each(:states))
ORDER BY queue, priority, run_at, id
LIMIT :limit OFFSET :offset

-- name: counts
WITH clock(now) AS (
    SELECT CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000
)
SELECT queue,
       CASE WHEN completed_at IS NOT NULL THEN 'completed'
            WHEN failed_at IS NOT NULL THEN 'failed'
            WHEN locked_at IS NOT NULL THEN 'running'
            WHEN run_at <= clock.now THEN 'ready'
            ELSE 'scheduled' END AS state,
       COUNT(*) AS n
FROM queuebox_jobs, clock
GROUP BY queue, state
ORDER BY queue

-- name: retry
-- A running job is left alone: its worker still holds it.
UPDATE queuebox_jobs
SET failed_at = NULL, completed_at = NULL, attempts = 0,
    run_at = CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000,
    updated_at = CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000
WHERE id = :id AND locked_at IS NULL

-- name: delete_job
DELETE FROM queuebox_jobs WHERE id = :id

-- name: clear_all
DELETE FROM queuebox_jobs

-- name: clear_queues
DELETE FROM queuebox_jobs WHERE queue IN (SELECT value FROM json_each(:queues))
