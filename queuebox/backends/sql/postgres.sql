-- Named queries of the PostgreSQL dialect (queuebox/backends/postgres.py) of the SQL base
-- (queuebox/backends/sql/store.py); see docs/postgres.md and docs/sql-base.md.
--
-- Placeholders in braces are identifiers and literals the adapter fills in with
-- psycopg.sql (never string formatting of user input):
--   {jobs}       the jobs table, schema-qualified when a schema is configured
--   {migrations} the table that records which schema versions were applied
--   {recurring}  the table of the last tick each recurring job reached
--   {schema_literal} the configured schema as a string literal (NULL when none)
--   {migrations_literal} the name of {migrations}, {migrate_key} the advisory lock's key
--   {due_index} {next_index} {queue_index} {unique_index} {next_statistics}  index and
--                statistics names
--   {channel}    the LISTEN/NOTIFY channel, as a string literal; {channel_name} as identifier
-- %(name)s are bound parameters (%(name)b: bound in binary); list parameters are arrays.
-- Times come from the server: now() is the start of the statement's transaction, and every
-- statement here runs in its own transaction unless the SQL base opens one. Durations
-- (%(lease)s, %(delay)s) are seconds.

-- fragment: state
-- A job's state on the store's clock, in the order records.JobState states.
CASE WHEN job.completed_at IS NOT NULL THEN 'completed'
     WHEN job.failed_at IS NOT NULL THEN 'failed'
     WHEN job.cancelled_at IS NOT NULL
          AND (job.locked_at IS NULL OR job.lock_expires_at <= now()) THEN 'cancelled'
     WHEN job.locked_at IS NOT NULL THEN 'running'
     WHEN job.run_at <= now() THEN 'ready'
     ELSE 'scheduled' END

-- fragment: unlock
locked_at = NULL, locked_by = NULL, lock_expires_at = NULL, lock_token = NULL

-- fragment: acks
unnest(%(ids)s::bigint[], %(tokens)s::text[]) AS ack(id, token)

-- fragment: notify_changed
-- A NOTIFY for each queue of the rows a write returned in the CTE "changed", sent at commit.
SELECT pg_notify({channel}, queue) FROM changed

-- fragment: owned_and_notified
-- The end of a worker's write that unlocks its job: a job asked to stop becomes cancelled,
-- which frees its key; and a NOTIFY for its queue.
unique_key = CASE WHEN cancelled_at IS NULL THEN unique_key END
    WHERE id = %(id)s AND lock_token = %(token)s
    RETURNING queue
)
{% notify_changed %}

-- fragment: insert
-- Ids follow the input order (ORDER BY position). The arrays are bound in binary (the
-- "b" placeholders): psycopg then sends each element as it is, where the text form of an
-- array would escape every quote of every handler's JSON in Python.
INSERT INTO {jobs} AS job
    (name, handler, queue, priority, run_at, created_at, updated_at, unique_key)
SELECT new_job.name, new_job.handler, new_job.queue, new_job.priority,
       coalesce(new_job.run_at, now() + make_interval(secs => new_job.delay)),
       now(), now(), new_job.unique_key
FROM unnest(
    %(names)b::text[], %(handlers)b::text[], %(queues)b::text[],
    %(priorities)b::integer[], %(run_ats)b::timestamptz[], %(delays)b::float8[],
    %(unique_keys)b::text[]
) WITH ORDINALITY
    AS new_job(name, handler, queue, priority, run_at, delay, unique_key, position)
ORDER BY new_job.position

-- fragment: insert_one
-- One job from scalar parameters: the statement a request's perform_later sends.
INSERT INTO {jobs} AS job
    (name, handler, queue, priority, run_at, created_at, updated_at, unique_key)
VALUES (
    %(name)s::text, %(handler)s::text, %(queue)s::text, %(priority)s::integer,
    coalesce(%(run_at)s::timestamptz, now() + make_interval(secs => %(delay)s::float8)),
    now(), now(), %(unique_key)s::text
)

-- fragment: on_held_key
ON CONFLICT (queue, unique_key) WHERE unique_key IS NOT NULL DO NOTHING

-- fragment: inserted_rows
-- What the store decided for each row it stored (inserts.FRESH_COLUMNS); the rest of the
-- record is the job as sent. pg_notify in RETURNING wakes the workers of the row's queue
-- without another statement or round trip: it runs once per stored row (a row skipped by
-- ON CONFLICT sends nothing), PostgreSQL folds the repeats of a channel and payload within
-- a transaction into one, and sends it at commit (at once in autocommit, else with the
-- caller's commit).
RETURNING job.id, job.run_at, job.created_at, job.queue, job.unique_key,
          pg_notify({channel}, job.queue) AS notified


-- Transactions and schema -------------------------------------------------------------------

-- name: begin
BEGIN

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: session_setup
-- Nothing to set: times are converted to UTC value by value, whatever the session TimeZone.

-- name: schema_present
SELECT EXISTS (
    SELECT 1 FROM pg_tables
    WHERE schemaname = coalesce({schema_literal}::text, current_schema())
      AND tablename = {migrations_literal}
) AS present

-- name: schema_version
SELECT coalesce(max(version), 0) AS version FROM {migrations}

-- name: migrate_prepare
-- Serializes concurrent migrations (two processes starting at once) until commit, and
-- creates the configured schema only when it is missing (CREATE SCHEMA IF NOT EXISTS needs
-- the CREATE privilege on the database even when the schema exists).
SET LOCAL client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext({migrate_key}));
DO $queuebox_migrate$
BEGIN
    IF {schema_literal}::text IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = {schema_literal}) THEN
        EXECUTE format('CREATE SCHEMA %I', {schema_literal}::text);
    END IF;
END
$queuebox_migrate$;
CREATE TABLE IF NOT EXISTS {migrations} (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: record_version
INSERT INTO {migrations} (version) VALUES (%(version)s) ON CONFLICT (version) DO NOTHING

-- name: migrate_v1
CREATE TABLE IF NOT EXISTS {jobs} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    handler text NOT NULL,
    queue text NOT NULL,
    priority integer NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL,
    locked_at timestamptz,
    locked_by text,
    lock_expires_at timestamptz,
    lock_token text,
    last_error text,
    failed_at timestamptz,
    completed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- The claim walks this index in order and stops after LIMIT rows: fast with millions of
-- ready jobs. Failed and completed jobs are not in it.
CREATE INDEX IF NOT EXISTS {due_index} ON {jobs} (priority, run_at, id)
    WHERE failed_at IS NULL AND completed_at IS NULL;
-- When the job can next be claimed: greatest() ignores NULL, so this is run_at for an
-- unlocked job and the later of run_at and the lock's expiry for a locked one. It answers
-- wait_for_work's "when is the next job due" and lets the claim find the few due jobs
-- among many scheduled for later.
CREATE INDEX IF NOT EXISTS {next_index} ON {jobs} ((greatest(run_at, lock_expires_at)))
    WHERE failed_at IS NULL AND completed_at IS NULL;
-- The planner ignores the statistics of partial indexes; without these it would guess that
-- a third of all jobs are due and walk {due_index} through a million jobs scheduled for
-- later to find the few that are due. (Expression statistics need PostgreSQL 14.)
CREATE STATISTICS IF NOT EXISTS {next_statistics} ON (greatest(run_at, lock_expires_at))
    FROM {jobs};
-- A worker that serves one queue finds its jobs without walking the other queues' jobs.
CREATE INDEX IF NOT EXISTS {queue_index} ON {jobs} (queue, priority, run_at, id)
    WHERE failed_at IS NULL AND completed_at IS NULL

-- name: migrate_v2
-- Unique jobs and recurring ticks. Adding a nullable column without a default only changes
-- the catalog; building the index reads the table once (it holds no entry yet: every
-- existing job has a NULL key). Code of version 1 keeps working on this schema: its
-- queries never name the new column, which stays NULL for the jobs it stores.
ALTER TABLE {jobs} ADD COLUMN IF NOT EXISTS unique_key text;
-- At most one waiting or running job per (queue, unique_key). The key is cleared when a
-- job fails or is kept as completed, and deleted with its row, which frees it. Only keyed
-- jobs are in the index, so jobs without a key cost nothing more to store or claim.
CREATE UNIQUE INDEX IF NOT EXISTS {unique_index} ON {jobs} (queue, unique_key)
    WHERE unique_key IS NOT NULL;
-- The last tick each recurring job reached, so that each tick is stored once.
CREATE TABLE IF NOT EXISTS {recurring} (
    key text PRIMARY KEY,
    last_tick timestamptz NOT NULL
)

-- name: migrate_v3
-- Cancellation: when a job was cancelled (waiting) or asked to stop (running). A nullable
-- column without a default only changes the catalog.
ALTER TABLE {jobs} ADD COLUMN IF NOT EXISTS cancelled_at timestamptz


-- Scheduling --------------------------------------------------------------------------------

-- name: now
SELECT now() AS now

-- name: insert_jobs
-- A batch without unique keys (the common case): a plain insert, which skips the speculative
-- insertion that ON CONFLICT performs for every row.
{% insert %}
{% inserted_rows %}

-- name: insert_unique_jobs
-- A job whose (queue, unique_key) a waiting or running job holds (or an earlier job of the
-- same batch took) is not inserted and returns no row: the SQL base then reads the holder
-- with unique_holders. When the holder is not committed yet, the insert waits for its
-- transaction to end, so concurrent enqueues of one key store one job.
{% insert %}
{% on_held_key %}
{% inserted_rows %}

-- name: insert_job
-- insert_jobs for a batch of one job.
{% insert_one %}
{% inserted_rows %}

-- name: insert_unique_job
-- insert_unique_jobs for a batch of one job.
{% insert_one %}
{% on_held_key %}
{% inserted_rows %}

-- name: unique_holders
-- The waiting or running jobs that hold these (queue, unique_key) pairs, through
-- {unique_index}.
SELECT job.*, {% state %} AS state
FROM unnest(%(queues)s::text[], %(unique_keys)s::text[]) AS wanted(queue, unique_key)
JOIN {jobs} AS job ON job.queue = wanted.queue AND job.unique_key = wanted.unique_key

-- name: record_tick
-- Returns a row only when this call recorded the first tick of key or moved it forward.
-- Concurrent calls queue on the row lock, and each sees the tick the previous one wrote:
-- one of them stores a given tick.
INSERT INTO {recurring} AS recurring (key, last_tick) VALUES (%(key)s, %(tick)s)
ON CONFLICT (key) DO UPDATE SET last_tick = excluded.last_tick
WHERE excluded.last_tick > recurring.last_tick
RETURNING key

-- name: recurring_ticks
SELECT key, last_tick FROM {recurring} ORDER BY key


-- Execution ---------------------------------------------------------------------------------

-- name: claim
-- One statement: pick the best due jobs, skipping rows another claim holds, and lock them.
-- greatest(run_at, lock_expires_at) <= now() means "due, and unlocked or its lock expired".
-- The WorkerLost text must match records.reclaim_note (a test checks it). Each job's token
-- is %(nonce)s (fresh random text from Python's secrets module per claim) and its id.
WITH candidates AS MATERIALIZED (
    SELECT id, locked_by AS previous_owner,
           lock_expires_at AT TIME ZONE 'UTC' AS previous_expiry
    FROM {jobs}
    WHERE failed_at IS NULL AND completed_at IS NULL AND cancelled_at IS NULL
      AND greatest(run_at, lock_expires_at) <= now()
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
    ORDER BY priority, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {jobs} AS job
-- attempts stops at the largest integer instead of overflowing (which would fail the
-- whole claim): a job at the limit is still claimed, and then failed.
SET attempts = CASE WHEN job.attempts < 2147483647 THEN job.attempts + 1 ELSE job.attempts END,
    locked_at = now(),
    locked_by = %(worker_id)s,
    lock_expires_at = now() + make_interval(secs => %(lease)s),
    lock_token = %(nonce)s || '.' || job.id,
    last_error = CASE
        WHEN candidates.previous_owner IS NULL THEN job.last_error
        ELSE 'WorkerLost: the lock held by worker ' || candidates.previous_owner
            || ' expired at '
            || coalesce(
                to_char(candidates.previous_expiry, 'YYYY-MM-DD"T"HH24:MI:SS')
                || CASE to_char(candidates.previous_expiry, 'US')
                    WHEN '000000' THEN '' ELSE '.' || to_char(candidates.previous_expiry, 'US')
                   END
                || '+00:00',
                'an unknown time')
            || ' before the job finished; the job was claimed again'
    END,
    updated_at = now()
FROM candidates
WHERE job.id = candidates.id
RETURNING job.*, 'running' AS state

-- name: delete_locked
DELETE FROM {jobs} WHERE id = %(id)s AND lock_token = %(token)s

-- name: complete_many_delete
DELETE FROM {jobs} AS job
USING {% acks %}
WHERE job.id = ack.id AND job.lock_token = ack.token
RETURNING job.id

-- name: complete_keep
-- A kept job frees its unique key, as a deleted one does.
UPDATE {jobs}
SET {% unlock %}, unique_key = NULL, completed_at = now(), updated_at = now()
WHERE id = %(id)s AND lock_token = %(token)s

-- name: complete_many_keep
UPDATE {jobs} AS job
SET {% unlock %}, unique_key = NULL, completed_at = now(), updated_at = now()
FROM {% acks %}
WHERE job.id = ack.id AND job.lock_token = ack.token
RETURNING job.id

-- name: reschedule
WITH changed AS (
    UPDATE {jobs}
    SET {% unlock %}, last_error = %(error)s,
        run_at = now() + make_interval(secs => %(delay)s), updated_at = now(),
        {% owned_and_notified %}

-- name: fail_keep
-- A failed job frees its unique key: retrying it later does not take the key back.
UPDATE {jobs}
SET {% unlock %}, unique_key = NULL, last_error = %(error)s, failed_at = now(), updated_at = now()
WHERE id = %(id)s AND lock_token = %(token)s

-- name: release
WITH changed AS (
    UPDATE {jobs}
    SET {% unlock %}, attempts = greatest(attempts, 1) - 1, updated_at = now(),
        {% owned_and_notified %}

-- name: extend
UPDATE {jobs}
SET lock_expires_at = now() + make_interval(secs => %(lease)s), updated_at = now()
WHERE id = %(id)s AND lock_token = %(token)s

-- name: extend_many
-- Every lock a worker holds, renewed in one statement.
UPDATE {jobs} AS job
SET lock_expires_at = now() + make_interval(secs => %(lease)s), updated_at = now()
FROM {% acks %}
WHERE job.id = ack.id AND job.lock_token = ack.token
RETURNING job.id

-- name: next_due
-- Seconds until the next job of these queues can be claimed (<= 0: now; NULL: none).
SELECT extract(epoch FROM min(greatest(run_at, lock_expires_at)) - now())::float8 AS wait
FROM {jobs}
WHERE failed_at IS NULL AND completed_at IS NULL AND cancelled_at IS NULL
  AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))

-- name: listen
LISTEN {channel_name}

-- name: changes
-- Nothing to poll: waiting workers LISTEN for the NOTIFY every enqueue sends.


-- Inspection and administration -------------------------------------------------------------

-- name: get
SELECT job.*, {% state %} AS state FROM {jobs} AS job WHERE job.id = %(id)s

-- name: list_jobs
SELECT *
FROM (
    SELECT job.*, {% state %} AS state
    FROM {jobs} AS job
    WHERE %(queues)s::text[] IS NULL OR job.queue = ANY(%(queues)s::text[])
) AS job
WHERE %(states)s::text[] IS NULL OR job.state = ANY(%(states)s::text[])
ORDER BY job.queue COLLATE "C", job.priority, job.run_at, job.id
LIMIT %(limit)s OFFSET %(offset)s

-- name: counts
SELECT job.queue AS queue, {% state %} AS state, count(*) AS n
FROM {jobs} AS job
GROUP BY 1, 2

-- name: retry
-- unique_key is left as it is: a failed, cancelled or kept completed job has none (it was
-- cleared), so a retried job does not take its key back; a scheduled one keeps the key it
-- holds. A live lock is left alone; a lapsed lock's stale fields are cleared.
WITH changed AS (
    UPDATE {jobs}
    SET failed_at = NULL, completed_at = NULL, cancelled_at = NULL, attempts = 0,
        run_at = now(), updated_at = now(), {% unlock %}
    WHERE id = %(id)s AND (locked_at IS NULL OR lock_expires_at <= now())
    RETURNING queue
)
{% notify_changed %}

-- name: cancel
-- One statement: a waiting job (or one whose lock lapsed) is cancelled at once, its lock
-- fields and unique key cleared; a running one keeps its lock and gets cancelled_at, which
-- its worker reads with cancel_requested. No row: finished already, or no such job.
UPDATE {jobs} AS job
SET cancelled_at = coalesce(job.cancelled_at, now()), updated_at = now(),
    unique_key = CASE WHEN job.lock_expires_at > now() THEN job.unique_key END,
    lock_token = CASE WHEN job.lock_expires_at > now() THEN job.lock_token END,
    locked_by = CASE WHEN job.lock_expires_at > now() THEN job.locked_by END,
    locked_at = CASE WHEN job.lock_expires_at > now() THEN job.locked_at END,
    lock_expires_at = CASE WHEN job.lock_expires_at > now() THEN job.lock_expires_at END
WHERE job.id = %(id)s AND job.failed_at IS NULL AND job.completed_at IS NULL
  AND (job.cancelled_at IS NULL OR job.lock_expires_at > now())
RETURNING CASE WHEN job.locked_at IS NULL THEN 'cancelled' ELSE 'requested' END AS outcome

-- name: cancel_requested
SELECT id FROM {jobs} WHERE id = ANY(%(ids)s::bigint[]) AND cancelled_at IS NOT NULL

-- name: mark_cancelled
UPDATE {jobs}
SET cancelled_at = coalesce(cancelled_at, now()), updated_at = now(),
    last_error = coalesce(%(error)s, last_error), {% unlock %}, unique_key = NULL
WHERE id = %(id)s AND lock_token = %(token)s

-- name: delete
DELETE FROM {jobs} WHERE id = %(id)s

-- name: clear
DELETE FROM {jobs} WHERE %(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[])
