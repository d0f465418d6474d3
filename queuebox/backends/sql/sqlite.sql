-- Named queries of the SQLite dialect (queuebox/backends/sqlite.py) of the SQL base
-- (queuebox/backends/sql/store.py); see docs/sqlite.md and docs/sql-base.md.
--
-- Times are INTEGER microseconds since 1970-01-01 UTC, taken from SQLite's clock ({% store_now %}).
-- julianday('now') holds whole milliseconds, so rounding to the millisecond is exact; the
-- factor 1000 leaves room for the microseconds of a caller's absolute run_at. SQLite fixes
-- 'now' for the whole of one statement, so every use inside a statement agrees.
-- Durations (:lease, :delay) are microseconds too. List parameters are JSON arrays.
--
-- A job is "waiting" (scheduled or ready) when it is unlocked and neither failed nor
-- completed ({% waiting %}). Every query that looks for waiting jobs pastes that predicate,
-- the one of the partial indexes queuebox_jobs_free and queuebox_jobs_keyed (with
-- limit_key IS NULL or IS NOT NULL), so that the planner can use them.

-- fragment: store_now
CAST(ROUND((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) * 1000

-- fragment: waiting
locked_at IS NULL AND failed_at IS NULL AND completed_at IS NULL

-- fragment: claimable
-- Waiting and not cancelled. The index predicate above is part of it, so that index serves.
{% waiting %} AND cancelled_at IS NULL

-- fragment: state
-- A job's state on the store's clock, in the order records.JobState states; needs clock.now.
CASE WHEN job.completed_at IS NOT NULL THEN 'completed'
     WHEN job.failed_at IS NOT NULL THEN 'failed'
     WHEN job.cancelled_at IS NOT NULL
          AND (job.locked_at IS NULL OR job.lock_expires_at <= clock.now) THEN 'cancelled'
     WHEN job.locked_at IS NOT NULL THEN 'running'
     WHEN job.run_at <= clock.now THEN 'ready'
     ELSE 'scheduled' END

-- fragment: free
-- A claimable job without a flow-control key: the partial index queuebox_jobs_free holds
-- only these, so that jobs held back by a limit cost the unlimited claim nothing.
{% claimable %} AND limit_key IS NULL

-- fragment: limited
-- A claimable job with a flow-control key (the partial index queuebox_jobs_keyed).
{% claimable %} AND limit_key IS NOT NULL

-- fragment: in_queues
(:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))

-- fragment: unlock
locked_at = NULL, locked_by = NULL, lock_expires_at = NULL, lock_token = NULL

-- fragment: acks
-- The (id, token) pairs of :ids and :tokens, which the adapter also binds as one JSON array
-- of pairs, :acks (reading it once is cheaper than matching two arrays by position).
ack(id, token) AS (SELECT value ->> 0, value ->> 1 FROM json_each(:acks))

-- fragment: waiting_groups
-- Every (queue, priority) group of waiting jobs in :queues (a JSON array, or NULL for every
-- queue), one index seek each. A plain ORDER BY priority, run_at over waiting jobs would
-- scan every job not yet due (or of another queue) that sorts ahead of the due ones; this
-- "skip scan" visits each group once instead, and claim reads at most :limit due jobs of each.
clock(now) AS (SELECT {% store_now %}),
named_queue(queue) AS (
    SELECT DISTINCT value FROM json_each(:queues) WHERE :queues IS NOT NULL
),
-- Without :queues, every queue with claimable jobs: one skip scan over queuebox_jobs_free and
-- one over queuebox_jobs_keyed (which together hold every waiting job, each job once).
free_queue(queue) AS (
    SELECT MIN(queue) FROM queuebox_jobs WHERE :queues IS NULL AND {% free %}
    UNION ALL
    SELECT (SELECT MIN(queue) FROM queuebox_jobs WHERE queue > free_queue.queue AND {% free %})
    FROM free_queue WHERE free_queue.queue IS NOT NULL
),
keyed_queue(queue) AS (
    SELECT MIN(queue) FROM queuebox_jobs WHERE :queues IS NULL AND {% limited %}
    UNION ALL
    SELECT (
        SELECT MIN(queue) FROM queuebox_jobs WHERE queue > keyed_queue.queue AND {% limited %}
    )
    FROM keyed_queue WHERE keyed_queue.queue IS NOT NULL
),
chosen_queue(queue) AS (
    -- A paused queue is never claimed (FlowControl).
    SELECT queue FROM named_queue WHERE queue NOT IN (SELECT queue FROM queuebox_paused)
    UNION
    SELECT queue FROM free_queue
    WHERE queue IS NOT NULL AND queue NOT IN (SELECT queue FROM queuebox_paused)
    UNION
    SELECT queue FROM keyed_queue
    WHERE queue IS NOT NULL AND queue NOT IN (SELECT queue FROM queuebox_paused)
),
grp(queue, priority) AS (
    SELECT queue, (
        SELECT MIN(priority) FROM queuebox_jobs
        WHERE queue = chosen_queue.queue AND {% free %}
    )
    FROM chosen_queue
    UNION ALL
    SELECT queue, (
        SELECT MIN(priority) FROM queuebox_jobs
        WHERE queue = grp.queue AND priority > grp.priority AND {% free %}
    )
    FROM grp WHERE grp.priority IS NOT NULL
),
-- Flow control: every (queue, limit key) with waiting jobs, one index seek each (the same
-- skip scan over queuebox_jobs_keyed), and every key of a lapsed lock.
waiting_key(queue, limit_key) AS (
    SELECT queue, (
        SELECT MIN(limit_key) FROM queuebox_jobs
        WHERE queue = chosen_queue.queue AND {% limited %}
    )
    FROM chosen_queue
    UNION ALL
    SELECT queue, (
        SELECT MIN(limit_key) FROM queuebox_jobs
        WHERE queue = waiting_key.queue AND limit_key > waiting_key.limit_key AND {% limited %}
    )
    FROM waiting_key WHERE waiting_key.limit_key IS NOT NULL
),
limit_key_of(queue, limit_key) AS (
    SELECT queue, limit_key FROM waiting_key WHERE limit_key IS NOT NULL
    UNION
    SELECT queue, limit_key FROM queuebox_jobs
    WHERE locked_at IS NOT NULL AND lock_expires_at <= (SELECT now FROM clock)
      AND limit_key IS NOT NULL AND cancelled_at IS NULL
      AND {% in_queues %} AND queue NOT IN (SELECT queue FROM queuebox_paused)
    UNION
    SELECT queue, limit_key FROM queuebox_jobs
    WHERE locked_at IS NOT NULL AND lock_expires_at IS NULL
      AND limit_key IS NOT NULL AND cancelled_at IS NULL
      AND {% in_queues %} AND queue NOT IN (SELECT queue FROM queuebox_paused)
),
-- The limits of a key are those of its best waiting job (else of its locked ones): a job
-- class gives every job of a key the same.
key_limit(queue, limit_key, max_concurrency, rate_count) AS (
    SELECT queue, limit_key,
        COALESCE((
            SELECT max_concurrency FROM queuebox_jobs
            WHERE queue = k.queue AND limit_key = k.limit_key AND {% limited %}
            ORDER BY priority, run_at, id LIMIT 1
        ), (
            SELECT MIN(max_concurrency) FROM queuebox_jobs
            WHERE queue = k.queue AND limit_key = k.limit_key AND locked_at IS NOT NULL
        )),
        COALESCE((
            SELECT rate_count FROM queuebox_jobs
            WHERE queue = k.queue AND limit_key = k.limit_key AND {% limited %}
            ORDER BY priority, run_at, id LIMIT 1
        ), (
            SELECT MIN(rate_count) FROM queuebox_jobs
            WHERE queue = k.queue AND limit_key = k.limit_key AND locked_at IS NOT NULL
        ))
    FROM limit_key_of AS k
),
-- How many jobs of each key may start now: its free run slots (live locks counted from
-- the job table, so a lapsed lock frees its slot by itself) and its starts left in the
-- rate window (queuebox_starts, written by the trigger queuebox_jobs_start).
key_slot(queue, limit_key, slots) AS (
    SELECT queue, limit_key, MIN(
        COALESCE(max_concurrency - (
            SELECT COUNT(*) FROM queuebox_jobs
            WHERE queue = key_limit.queue AND limit_key = key_limit.limit_key
              AND locked_at IS NOT NULL AND lock_expires_at > (SELECT now FROM clock)
        ), 1 << 62),
        COALESCE(rate_count - (
            SELECT COUNT(*) FROM queuebox_starts
            WHERE queue = key_limit.queue AND limit_key = key_limit.limit_key
              AND expires_at > (SELECT now FROM clock)
        ), 1 << 62)
    )
    FROM key_limit
)

-- fragment: insert
-- One job from scalar parameters (insert_job, the enqueue of a request).
INSERT INTO queuebox_jobs AS job
    ({% insert_columns %})
SELECT :name, :handler, :queue, :priority, COALESCE(:run_at, now + :delay), now, now,
       :unique_key, :limit_key, :max_concurrency, :rate_count, :rate_per
FROM (SELECT {% store_now %} AS now) WHERE true

-- fragment: insert_batch
-- A batch from one JSON array of rows, each [name, handler, queue, priority, run_at,
-- delay, unique_key, limit_key, max_concurrency, rate_count, rate_per] (SQLiteAdapter.
-- _batch_params): one statement stores up to insert_batch jobs, in the array's order, so
-- their ids follow it. ("WHERE true" keeps SQLite from reading ON CONFLICT as a join.)
INSERT INTO queuebox_jobs AS job
    ({% insert_columns %})
SELECT row.value ->> 0, row.value ->> 1, row.value ->> 2, row.value ->> 3,
       COALESCE(row.value ->> 4, now + (row.value ->> 5)), now, now,
       row.value ->> 6, row.value ->> 7, row.value ->> 8, row.value ->> 9, row.value ->> 10
FROM (SELECT {% store_now %} AS now), json_each(:jobs) AS row WHERE true
ORDER BY row.key

-- fragment: insert_columns
name, handler, queue, priority, run_at, created_at, updated_at, unique_key,
limit_key, max_concurrency, rate_count, rate_per

-- fragment: inserted
-- What the store decided for each job (inserts.FRESH_COLUMNS); the rest of the record is
-- the job as it was sent.
RETURNING id, run_at, created_at, queue, unique_key

-- fragment: on_held_key
-- A held unique key inserts nothing (and returns no row); the SQL base reads the holder.
ON CONFLICT (queue, unique_key) WHERE unique_key IS NOT NULL DO NOTHING


-- Connections, transactions and schema ------------------------------------------------------

-- name: begin
-- Every write holds the write lock from its first statement: a deferred transaction that
-- reads, then writes, fails at once with "database is locked" when another writer got in
-- between, while BEGIN IMMEDIATE waits for the lock (up to busy_timeout) first.
BEGIN IMMEDIATE

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: session_setup
PRAGMA journal_mode = WAL

-- name: schema_present
-- Nothing to ask: PRAGMA user_version answers 0 for a new file.

-- name: schema_version
SELECT user_version AS version FROM pragma_user_version

-- name: migrate_prepare
-- Nothing to prepare: BEGIN IMMEDIATE already serializes processes that migrate at once.

-- name: record_version
-- PRAGMA takes no bound parameter: the adapter writes the (integer) version in.
PRAGMA user_version = {version}

-- name: migrate_v1
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
) STRICT;
-- The claim index of versions 1 and 2 (migrate_v5 drops it): only waiting jobs, so running,
-- failed and completed rows cost nothing.
-- Claim walks it by (queue, priority) groups, each of which is ordered by (run_at, id), so
-- the due jobs of a group are a prefix of it.
CREATE INDEX IF NOT EXISTS queuebox_jobs_waiting
ON queuebox_jobs (queue, priority, run_at, id)
WHERE {% waiting %};
-- Running jobs by lock expiry: finds the expired locks to reclaim without a scan.
CREATE INDEX IF NOT EXISTS queuebox_jobs_locks
ON queuebox_jobs (lock_expires_at)
WHERE locked_at IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS queuebox_jobs_unique
ON queuebox_jobs (queue, unique_key) WHERE unique_key IS NOT NULL;
-- The last tick each recurring job reached, so that every tick is stored once.
CREATE TABLE IF NOT EXISTS queuebox_recurring (
    key TEXT PRIMARY KEY,
    last_tick INTEGER NOT NULL
) STRICT

-- name: migrate_v2
-- Cancellation: when a job was cancelled (waiting) or asked to stop (running).
ALTER TABLE queuebox_jobs ADD COLUMN cancelled_at INTEGER

-- name: migrate_v3
-- Flow control (sql/flow.py): a job's limit key and limits, the paused queues, and the
-- recent starts of rate-limited keys. rate_per is microseconds.
ALTER TABLE queuebox_jobs ADD COLUMN limit_key TEXT;
ALTER TABLE queuebox_jobs ADD COLUMN max_concurrency INTEGER;
ALTER TABLE queuebox_jobs ADD COLUMN rate_count INTEGER;
ALTER TABLE queuebox_jobs ADD COLUMN rate_per INTEGER;
-- The unlimited claim walks this index: jobs with a limit key are not in it, so any number
-- of them held back costs that claim nothing.
CREATE INDEX IF NOT EXISTS queuebox_jobs_free
ON queuebox_jobs (queue, priority, run_at, id)
WHERE {% waiting %} AND limit_key IS NULL;
-- Waiting jobs by key: one seek finds a key's best job, another the next key.
CREATE INDEX IF NOT EXISTS queuebox_jobs_keyed
ON queuebox_jobs (queue, limit_key, priority, run_at, id)
WHERE {% waiting %} AND limit_key IS NOT NULL;
-- Running jobs by key: a key's live locks are counted from these rows alone.
CREATE INDEX IF NOT EXISTS queuebox_jobs_running_keys
ON queuebox_jobs (queue, limit_key)
WHERE locked_at IS NOT NULL AND limit_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS queuebox_paused (queue TEXT PRIMARY KEY) STRICT;
-- One row per start of a rate-limited job, until its window ends (expires_at).
CREATE TABLE IF NOT EXISTS queuebox_starts (
    queue TEXT NOT NULL,
    limit_key TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS queuebox_starts_key ON queuebox_starts (queue, limit_key, expires_at);
-- Every claim of a rate-limited job records its start inside the claim's statement; the
-- key's starts past their window are dropped then. (The statements of the trigger end in
-- "; --" so that the migration runner, which splits at a semicolon ending a line, keeps it whole.)
CREATE TRIGGER IF NOT EXISTS queuebox_jobs_start
AFTER UPDATE OF locked_at ON queuebox_jobs
WHEN NEW.locked_at IS NOT NULL AND NEW.locked_at IS NOT OLD.locked_at
     AND NEW.limit_key IS NOT NULL AND NEW.rate_count IS NOT NULL
BEGIN
    DELETE FROM queuebox_starts
    WHERE queue = NEW.queue AND limit_key = NEW.limit_key AND expires_at <= NEW.locked_at; --
    INSERT INTO queuebox_starts (queue, limit_key, expires_at)
    VALUES (NEW.queue, NEW.limit_key, NEW.locked_at + NEW.rate_per); --
END


-- name: migrate_v4
-- The job search (sql/monitor.py, search_failed and its siblings) finds the jobs of a state
-- that few jobs are in, newest first, through these instead of walking the whole table. A
-- row enters one only when it reaches that state (a claim or a delete changes none of
-- their columns), so the claim's path does not pay for them.
CREATE INDEX IF NOT EXISTS queuebox_jobs_failed ON queuebox_jobs (id)
WHERE failed_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS queuebox_jobs_completed ON queuebox_jobs (id)
WHERE completed_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS queuebox_jobs_cancelled ON queuebox_jobs (id)
WHERE cancelled_at IS NOT NULL

-- name: migrate_v5
-- Since version 3 every waiting job is in queuebox_jobs_free or queuebox_jobs_keyed, by
-- whether it has a flow-control key, and the claims walk those two; queuebox_jobs_waiting
-- held every waiting job again, on the same columns, and was read only to list the queues
-- that have waiting jobs, which the two indexes list as well (waiting_groups). Each enqueue,
-- claim and retry wrote it for nothing.
DROP INDEX IF EXISTS queuebox_jobs_waiting

-- Scheduling --------------------------------------------------------------------------------

-- name: now
SELECT {% store_now %} AS now

-- name: insert_job
{% insert %}
{% inserted %}

-- name: insert_unique_job
{% insert %}
{% on_held_key %}
{% inserted %}

-- name: insert_jobs
{% insert_batch %}
{% inserted %}

-- name: insert_unique_jobs
{% insert_batch %}
{% on_held_key %}
{% inserted %}

-- name: unique_holders
-- The waiting or running jobs that hold these (queue, unique_key) pairs (one JSON array of
-- pairs, SQLiteAdapter._bind), through queuebox_jobs_unique on both columns (the pairs are
-- materialized first: joined lazily, SQLite would seek the index by queue alone).
WITH clock(now) AS (SELECT {% store_now %}),
wanted(queue, unique_key) AS MATERIALIZED (SELECT value ->> 0, value ->> 1 FROM json_each(:held))
SELECT job.*, {% state %} AS state
FROM wanted, clock
JOIN queuebox_jobs AS job ON job.queue = wanted.queue AND job.unique_key = wanted.unique_key

-- name: record_tick
-- Returns a row only when this call moved the tick forward (or recorded the first one).
INSERT INTO queuebox_recurring (key, last_tick) VALUES (:key, :tick)
ON CONFLICT (key) DO UPDATE SET last_tick = excluded.last_tick
WHERE excluded.last_tick > queuebox_recurring.last_tick
RETURNING key

-- name: recurring_ticks
SELECT key, last_tick FROM queuebox_recurring ORDER BY key


-- Execution ---------------------------------------------------------------------------------

-- fragment: free_candidates
-- The claim's candidates without a limit key: the best due jobs of each (queue, priority)
-- group, and the expired locks.
    SELECT job.id, job.priority, job.run_at
    FROM grp, queuebox_jobs AS job
    WHERE grp.priority IS NOT NULL AND job.id IN (
        SELECT id FROM queuebox_jobs
        WHERE queue = grp.queue AND priority = grp.priority
          AND run_at <= (SELECT now FROM clock) AND {% free %}
        ORDER BY run_at, id
        LIMIT :limit
    )
    UNION ALL
    -- Expired locks: running jobs whose worker stopped renewing them, and locks with no
    -- expiry at all (written past queuebox), which no worker renews either. Those of a
    -- limit key are taken below, within its slots.
    SELECT id, priority, run_at FROM queuebox_jobs
    WHERE locked_at IS NOT NULL AND lock_expires_at <= (SELECT now FROM clock)
      AND cancelled_at IS NULL AND limit_key IS NULL
      AND {% in_queues %} AND queue NOT IN (SELECT queue FROM queuebox_paused)
    UNION ALL
    SELECT id, priority, run_at FROM queuebox_jobs
    WHERE locked_at IS NOT NULL AND lock_expires_at IS NULL AND cancelled_at IS NULL
      AND limit_key IS NULL
      AND {% in_queues %} AND queue NOT IN (SELECT queue FROM queuebox_paused)

-- fragment: claim_update
-- Lock the best :limit candidates.
UPDATE queuebox_jobs
-- attempts stops at the largest integer instead of overflowing into a REAL (which the
-- STRICT table refuses): a job at the limit is still claimed, and then failed.
SET attempts = attempts + (attempts < 9223372036854775807),
    -- The right-hand sides see the row as it was, so this reads the lost worker's lock;
    -- the text is records.reclaim_note's (datetime.isoformat of an aware UTC time).
    last_error = CASE WHEN locked_by IS NULL THEN last_error ELSE
        'WorkerLost: the lock held by worker ' || locked_by || ' expired at '
        || COALESCE(
            strftime('%Y-%m-%dT%H:%M:%S', lock_expires_at / 1000000, 'unixepoch')
            || CASE WHEN lock_expires_at % 1000000 = 0 THEN ''
                    ELSE printf('.%06d', lock_expires_at % 1000000) END
            || '+00:00',
            'an unknown time')
        || ' before the job finished; the job was claimed again'
    END,
    locked_at = (SELECT now FROM clock),
    locked_by = :worker_id,
    lock_expires_at = (SELECT now FROM clock) + :lease,
    lock_token = :nonce || '.' || id,
    updated_at = (SELECT now FROM clock)
WHERE id IN (SELECT id FROM candidate ORDER BY priority, run_at, id LIMIT :limit)
RETURNING *, 'running' AS state

-- name: claim
-- One statement: pick the best :limit claimable jobs without a limit key and lock them
-- (SQLFlowControl runs claim_limited instead while jobs with a key are waiting or running).
WITH RECURSIVE
{% waiting_groups %},
candidate(id, priority, run_at) AS (
{% free_candidates %}
)
{% claim_update %}

-- name: claim_limited
-- claim, and the jobs with a limit key within their keys' slots.
WITH RECURSIVE
{% waiting_groups %},
-- Up to its slots (and :limit) due jobs of each key with slots left, best first, one index
-- seek each: the next job after the one before in the key's (priority, run_at, id) order.
key_take(queue, limit_key, slots, n, priority, run_at, id) AS (
    SELECT key_slot.queue, key_slot.limit_key, MIN(key_slot.slots, :limit), 1,
           job.priority, job.run_at, job.id
    FROM key_slot JOIN queuebox_jobs AS job ON job.id = (
        SELECT id FROM queuebox_jobs
        WHERE queue = key_slot.queue AND limit_key = key_slot.limit_key
          AND run_at <= (SELECT now FROM clock) AND {% limited %}
        ORDER BY priority, run_at, id LIMIT 1
    )
    WHERE key_slot.slots > 0
    UNION ALL
    SELECT take.queue, take.limit_key, take.slots, take.n + 1, job.priority, job.run_at, job.id
    FROM key_take AS take JOIN queuebox_jobs AS job ON job.id = (
        SELECT id FROM queuebox_jobs
        WHERE queue = take.queue AND limit_key = take.limit_key
          AND (priority, run_at, id) > (take.priority, take.run_at, take.id)
          AND run_at <= (SELECT now FROM clock) AND {% limited %}
        ORDER BY priority, run_at, id LIMIT 1
    )
    WHERE take.n < take.slots
),
candidate(id, priority, run_at) AS (
{% free_candidates %}
    UNION ALL
    -- Flow control: the best jobs of each key with slots left, no more than its slots; a
    -- key at its limit reads none of its jobs.
    SELECT id, priority, run_at FROM (
        SELECT id, priority, run_at, slots, ROW_NUMBER() OVER (
            PARTITION BY queue, limit_key ORDER BY priority, run_at, id
        ) AS n
        FROM (
            SELECT queue, limit_key, slots, id, priority, run_at FROM key_take
            UNION ALL
            SELECT job.queue, job.limit_key, key_slot.slots, job.id, job.priority, job.run_at
            FROM key_slot, queuebox_jobs AS job
            WHERE key_slot.slots > 0 AND job.queue = key_slot.queue
              AND job.limit_key = key_slot.limit_key
              AND job.locked_at IS NOT NULL AND job.cancelled_at IS NULL
              AND (job.lock_expires_at IS NULL
                   OR job.lock_expires_at <= (SELECT now FROM clock))
        )
    )
    WHERE n <= slots
)
{% claim_update %}

-- name: any_limited
-- Whether a job with a limit key waits or runs: one seek in each keyed index. Only then does
-- the claim need claim_limited's walk of the keys.
SELECT EXISTS (SELECT 1 FROM queuebox_jobs WHERE {% waiting %} AND limit_key IS NOT NULL)
    OR EXISTS (SELECT 1 FROM queuebox_jobs WHERE locked_at IS NOT NULL AND limit_key IS NOT NULL)
    AS found

-- name: next_due
-- Seconds until the first waiting job of :queues is due or the first lock expires; NULL
-- when there is neither. The same walk as claim.
WITH RECURSIVE
{% waiting_groups %},
due(at) AS (
    SELECT (
        SELECT MIN(run_at) FROM queuebox_jobs
        WHERE queue = grp.queue AND priority = grp.priority AND {% free %}
    )
    FROM grp WHERE grp.priority IS NOT NULL
    UNION ALL
    SELECT MIN(lock_expires_at) FROM queuebox_jobs
    WHERE locked_at IS NOT NULL AND cancelled_at IS NULL AND {% in_queues %}
      AND queue NOT IN (SELECT queue FROM queuebox_paused)
    UNION ALL
    -- A lock without an expiry can be taken over at once.
    SELECT (SELECT now FROM clock) FROM queuebox_jobs
    WHERE locked_at IS NOT NULL AND lock_expires_at IS NULL AND cancelled_at IS NULL
      AND {% in_queues %} AND queue NOT IN (SELECT queue FROM queuebox_paused)
    UNION ALL
    -- Flow control: a key with slots left is due with its first job; a key at its limit
    -- waits for a lock to end (a commit, or the expiry above) or a start to leave its window.
    SELECT (
        SELECT MIN(run_at) FROM queuebox_jobs
        WHERE queue = key_slot.queue AND limit_key = key_slot.limit_key AND {% limited %}
    )
    FROM key_slot WHERE key_slot.slots > 0
    UNION ALL
    SELECT MIN(expires_at) FROM queuebox_starts
    WHERE expires_at > (SELECT now FROM clock) AND {% in_queues %}
)
SELECT (MIN(at) - (SELECT now FROM clock)) / 1000000.0 AS wait FROM due

-- name: changes
-- Changes whenever another connection commits to the file, and costs no disk read.
PRAGMA data_version

-- name: listen
-- Nothing to listen to: SQLite cannot notify another process; waiting polls changes.

-- name: delete_locked
DELETE FROM queuebox_jobs WHERE id = :id AND lock_token = :token

-- name: complete_many_delete
WITH {% acks %}
DELETE FROM queuebox_jobs WHERE (id, lock_token) IN (SELECT id, token FROM ack)
RETURNING id

-- name: complete_keep
UPDATE queuebox_jobs
SET completed_at = {% store_now %}, updated_at = {% store_now %}, {% unlock %}, unique_key = NULL
WHERE id = :id AND lock_token = :token

-- name: complete_many_keep
WITH {% acks %}
UPDATE queuebox_jobs
SET completed_at = {% store_now %}, updated_at = {% store_now %}, {% unlock %}, unique_key = NULL
WHERE (id, lock_token) IN (SELECT id, token FROM ack)
RETURNING id

-- name: reschedule
-- A job asked to stop keeps cancelled_at and becomes cancelled, which frees its key.
UPDATE queuebox_jobs
SET run_at = {% store_now %} + :delay, updated_at = {% store_now %}, last_error = :error, {% unlock %},
    unique_key = CASE WHEN cancelled_at IS NULL THEN unique_key END
WHERE id = :id AND lock_token = :token

-- name: fail_keep
UPDATE queuebox_jobs
SET failed_at = {% store_now %}, updated_at = {% store_now %}, last_error = :error, {% unlock %},
    unique_key = NULL
WHERE id = :id AND lock_token = :token

-- name: release
-- run_at is left alone: the job is due again at once, in its old place in the order.
UPDATE queuebox_jobs
SET attempts = MAX(attempts, 1) - 1, updated_at = {% store_now %}, {% unlock %},
    unique_key = CASE WHEN cancelled_at IS NULL THEN unique_key END
WHERE id = :id AND lock_token = :token

-- name: extend
UPDATE queuebox_jobs
SET lock_expires_at = {% store_now %} + :lease, updated_at = {% store_now %}
WHERE id = :id AND lock_token = :token

-- name: extend_many
WITH {% acks %}
UPDATE queuebox_jobs
SET lock_expires_at = {% store_now %} + :lease, updated_at = {% store_now %}
WHERE (id, lock_token) IN (SELECT id, token FROM ack)
RETURNING id


-- Inspection and administration -------------------------------------------------------------

-- name: get
WITH clock(now) AS (SELECT {% store_now %})
SELECT job.*, {% state %} AS state
FROM queuebox_jobs AS job, clock
WHERE job.id = :id

-- name: list_jobs
-- :queues and :states are JSON arrays, or NULL for all.
WITH clock(now) AS (SELECT {% store_now %}),
job_state AS (
    SELECT job.*, {% state %} AS state
    FROM queuebox_jobs AS job, clock
    WHERE {% in_queues %}
)
SELECT * FROM job_state
WHERE :states IS NULL OR state IN (SELECT value FROM json_each(:states))
ORDER BY queue, priority, run_at, id
LIMIT :limit OFFSET :offset

-- name: counts
WITH clock(now) AS (SELECT {% store_now %})
SELECT job.queue AS queue, {% state %} AS state, COUNT(*) AS n
FROM queuebox_jobs AS job, clock
GROUP BY job.queue, state

-- name: retry
-- A job with a live lock is left alone: its worker still holds it. A lapsed lock's stale
-- fields are cleared.
UPDATE queuebox_jobs
SET failed_at = NULL, completed_at = NULL, cancelled_at = NULL, attempts = 0,
    run_at = {% store_now %}, updated_at = {% store_now %}, {% unlock %}
WHERE id = :id AND (locked_at IS NULL OR lock_expires_at <= {% store_now %})

-- name: cancel
-- One statement: a waiting job (or one whose lock lapsed) is cancelled at once, its lock
-- fields and unique key cleared; a running one keeps its lock and gets cancelled_at, which
-- its worker reads with cancel_requested. No row: finished already, or no such job.
WITH clock(now) AS (SELECT {% store_now %})
UPDATE queuebox_jobs
SET cancelled_at = COALESCE(cancelled_at, (SELECT now FROM clock)),
    updated_at = (SELECT now FROM clock),
    unique_key = CASE WHEN locked_at IS NULL OR lock_expires_at <= (SELECT now FROM clock)
                      THEN NULL ELSE unique_key END,
    lock_token = CASE WHEN lock_expires_at > (SELECT now FROM clock) THEN lock_token END,
    locked_by = CASE WHEN lock_expires_at > (SELECT now FROM clock) THEN locked_by END,
    locked_at = CASE WHEN lock_expires_at > (SELECT now FROM clock) THEN locked_at END,
    lock_expires_at = CASE WHEN lock_expires_at > (SELECT now FROM clock)
                           THEN lock_expires_at END
WHERE id = :id AND failed_at IS NULL AND completed_at IS NULL
  AND (cancelled_at IS NULL OR lock_expires_at > (SELECT now FROM clock))
RETURNING CASE WHEN locked_at IS NULL THEN 'cancelled' ELSE 'requested' END AS outcome

-- name: cancel_requested
SELECT id FROM queuebox_jobs
WHERE id IN (SELECT value FROM json_each(:ids)) AND cancelled_at IS NOT NULL

-- name: mark_cancelled
UPDATE queuebox_jobs
SET cancelled_at = COALESCE(cancelled_at, {% store_now %}), updated_at = {% store_now %},
    last_error = COALESCE(:error, last_error), {% unlock %}, unique_key = NULL
WHERE id = :id AND lock_token = :token

-- name: pause
INSERT INTO queuebox_paused (queue) VALUES (:queue) ON CONFLICT (queue) DO NOTHING
RETURNING queue

-- name: resume
DELETE FROM queuebox_paused WHERE queue = :queue RETURNING queue

-- name: paused_queues
SELECT queue FROM queuebox_paused ORDER BY queue

-- name: delete
DELETE FROM queuebox_jobs WHERE id = :id

-- name: clear
DELETE FROM queuebox_jobs WHERE {% in_queues %}
