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
--   {paused} {starts}  flow control's paused queues and recent starts of rate-limited keys;
--                {keyed_index} {running_index} {starts_index} their indexes, {lock_space}
--                the table's name as a literal, which makes its per-key advisory locks its own
--   {failed_index} {completed_index} {cancelled_index}  the job search's state indexes
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

-- fragment: in_queues
(%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))

-- fragment: not_paused
-- A paused queue is never claimed (FlowControl). Both subqueries are read once per
-- statement (InitPlans) and the test is a plain filter, so the claim still walks its index
-- in order. The first one is for the planner: it cannot know the paused list, and alone
-- "queue <> ALL (...)" is estimated to keep almost no row when the table holds few distinct
-- queues (none with one queue), which made it sort every due job instead of walking the
-- index and stopping after LIMIT.
(NOT EXISTS (SELECT 1 FROM {paused}) OR queue <> ALL (ARRAY(SELECT queue FROM {paused})))

-- fragment: keyed
-- A job with a flow-control key that may run or runs (the partial index {keyed_index}).
-- Jobs without a key are in {due_index}, {next_index} and {queue_index}, which hold only
-- them: jobs held back by a limit cost the plain claim nothing.
failed_at IS NULL AND completed_at IS NULL AND cancelled_at IS NULL AND limit_key IS NOT NULL

-- fragment: free_due
-- The due jobs without a limit key, with the fields of a lapsed lock that the WorkerLost
-- note reads; in any queue (the statement that includes it adds the queue test).
SELECT id, priority, run_at, locked_by AS previous_owner,
       lock_expires_at AT TIME ZONE 'UTC' AS previous_expiry
FROM {jobs}
WHERE failed_at IS NULL AND completed_at IS NULL AND cancelled_at IS NULL
  AND limit_key IS NULL
  AND greatest(run_at, lock_expires_at) <= now()

-- fragment: free_candidates
-- The due jobs without a limit key in the claimed queues (all of them when the queues are
-- NULL) that are not paused, skipping rows another claim holds (with its FOR UPDATE).
{% free_due %}
  AND {% in_queues %} AND {% not_paused %}

-- fragment: claim_set
-- The lock a claim writes on each of its candidates (a CTE "candidates" with previous_owner
-- and previous_expiry). attempts stops at the largest integer instead of overflowing
-- (which would fail the whole claim): a job at the limit is still claimed, and then failed.
-- The WorkerLost text must match records.reclaim_note (a test checks it). Each job's token
-- is %(nonce)s (fresh random text from Python's secrets module per claim) and its id.
UPDATE {jobs} AS job
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

-- fragment: limit_keys
-- Every (queue, limit key) with a job of {keyed_index} in %(queues)s, one index seek each
-- (a skip scan: the next key after the one before), so that 10,000 jobs of one key cost one
-- step, not 10,000. Needs WITH RECURSIVE.
waiting_key(queue, limit_key) AS (
    (SELECT queue, limit_key FROM {jobs}
     WHERE {% keyed %} AND {% in_queues %}
     ORDER BY queue, limit_key LIMIT 1)
    UNION ALL
    SELECT later.queue, later.limit_key
    FROM waiting_key AS previous CROSS JOIN LATERAL (
        SELECT queue, limit_key FROM {jobs}
        WHERE {% keyed %} AND {% in_queues %}
          AND (queue, limit_key) > (previous.queue, previous.limit_key)
        ORDER BY queue, limit_key LIMIT 1
    ) AS later
)

-- fragment: key_slots
-- How many jobs of each key of the CTE "key" (queue, limit_key) may start at (SELECT now
-- FROM clock): its free run slots (its live locks, counted from {running_index}, so a lapsed
-- lock frees its slot by itself and nothing is counted up or down that could leak) and its
-- starts left in the rate window ({starts}). The limits are those of the key's best job: a
-- job class gives every job of a key the same.
key_limit AS MATERIALIZED (
    SELECT key.queue, key.limit_key, best.max_concurrency, best.rate_count
    FROM key CROSS JOIN LATERAL (
        SELECT max_concurrency, rate_count FROM {jobs}
        WHERE queue = key.queue AND limit_key = key.limit_key AND {% keyed %}
        ORDER BY priority, run_at, id LIMIT 1
    ) AS best
),
key_slot AS MATERIALIZED (
    SELECT queue, limit_key, least(
        coalesce(max_concurrency - (
            SELECT count(*) FROM {jobs} AS running
            WHERE running.queue = key_limit.queue AND running.limit_key = key_limit.limit_key
              AND running.locked_at IS NOT NULL
              AND running.lock_expires_at > (SELECT now FROM clock)
        ), 2147483647),
        coalesce(rate_count - (
            SELECT count(*) FROM {starts} AS started
            WHERE started.queue = key_limit.queue AND started.limit_key = key_limit.limit_key
              AND started.expires_at > (SELECT now FROM clock)
        ), 2147483647)
    ) AS slots
    FROM key_limit
)

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
    (name, handler, queue, priority, run_at, created_at, updated_at, unique_key,
     limit_key, max_concurrency, rate_count, rate_per)
SELECT new_job.name, new_job.handler, new_job.queue, new_job.priority,
       coalesce(new_job.run_at, now() + make_interval(secs => new_job.delay)),
       now(), now(), new_job.unique_key,
       new_job.limit_key, new_job.max_concurrency, new_job.rate_count, new_job.rate_per
FROM unnest(
    %(names)b::text[], %(handlers)b::text[], %(queues)b::text[],
    %(priorities)b::integer[], %(run_ats)b::timestamptz[], %(delays)b::float8[],
    %(unique_keys)b::text[], %(limit_keys)b::text[], %(max_concurrencies)b::integer[],
    %(rate_counts)b::integer[], %(rate_pers)b::float8[]
) WITH ORDINALITY
    AS new_job(name, handler, queue, priority, run_at, delay, unique_key,
               limit_key, max_concurrency, rate_count, rate_per, position)
ORDER BY new_job.position

-- fragment: insert_one
-- One job from scalar parameters: the statement a request's perform_later sends.
INSERT INTO {jobs} AS job
    (name, handler, queue, priority, run_at, created_at, updated_at, unique_key,
     limit_key, max_concurrency, rate_count, rate_per)
VALUES (
    %(name)s::text, %(handler)s::text, %(queue)s::text, %(priority)s::integer,
    coalesce(%(run_at)s::timestamptz, now() + make_interval(secs => %(delay)s::float8)),
    now(), now(), %(unique_key)s::text,
    %(limit_key)s::text, %(max_concurrency)s::integer, %(rate_count)s::integer,
    %(rate_per)s::float8
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

-- name: migrate_v4
-- Flow control (postgres_flow.py): a job's limit key and limits (rate_per in seconds), the
-- paused queues, and the recent starts of rate-limited keys. The new columns only change
-- the catalog. The three claim indexes are rebuilt to hold only jobs without a key, so that
-- any number of jobs held back by a limit costs the plain claim nothing: on a large table
-- this reads it three times while the migration's lock keeps workers waiting.
ALTER TABLE {jobs}
    ADD COLUMN IF NOT EXISTS limit_key text,
    ADD COLUMN IF NOT EXISTS max_concurrency integer,
    ADD COLUMN IF NOT EXISTS rate_count integer,
    ADD COLUMN IF NOT EXISTS rate_per float8;
DROP INDEX IF EXISTS {due_index_qualified};
CREATE INDEX {due_index} ON {jobs} (priority, run_at, id)
    WHERE failed_at IS NULL AND completed_at IS NULL AND limit_key IS NULL;
DROP INDEX IF EXISTS {next_index_qualified};
CREATE INDEX {next_index} ON {jobs} ((greatest(run_at, lock_expires_at)))
    WHERE failed_at IS NULL AND completed_at IS NULL AND limit_key IS NULL;
DROP INDEX IF EXISTS {queue_index_qualified};
CREATE INDEX {queue_index} ON {jobs} (queue, priority, run_at, id)
    WHERE failed_at IS NULL AND completed_at IS NULL AND limit_key IS NULL;
-- Jobs by key: one seek finds a key's best job, another the next key (running ones are in
-- it too, so a lapsed lock of a key is found with the key's waiting jobs).
CREATE INDEX IF NOT EXISTS {keyed_index} ON {jobs} (queue, limit_key, priority, run_at, id)
    WHERE {% keyed %};
-- Locked jobs by key: a key's live locks are counted from these rows alone.
CREATE INDEX IF NOT EXISTS {running_index} ON {jobs} (queue, limit_key, lock_expires_at)
    WHERE locked_at IS NOT NULL AND limit_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS {paused} (queue text PRIMARY KEY);
-- One row per start of a rate-limited job until its window ends (expires_at); a claim that
-- holds a key's lock drops the key's rows past their window.
CREATE TABLE IF NOT EXISTS {starts} (
    queue text NOT NULL,
    limit_key text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS {starts_index} ON {starts} (queue, limit_key, expires_at)

-- name: migrate_v5
-- The job search (sql/monitor.py, search_failed and its siblings) finds the jobs of a state
-- few jobs are in, newest first, through these instead of walking the whole table. A row
-- enters one only when it reaches that state (a claim, an acknowledgement or a delete
-- changes none of their columns), so the claim's path does not pay for them. Building them
-- reads the table once each, under the migration's lock.
CREATE INDEX IF NOT EXISTS {failed_index} ON {jobs} (id) WHERE failed_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS {completed_index} ON {jobs} (id) WHERE completed_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS {cancelled_index} ON {jobs} (id) WHERE cancelled_at IS NOT NULL

-- name: migrate_v6
-- The limited claim as a function (claim_limited calls it): PL/pgSQL plans each of its
-- statements once per session and keeps the plan (SPI's plan cache), so a claim no longer
-- pays the planning of two large statements every time; unlike a prepared statement, this
-- needs nothing of the protocol, and works behind PgBouncer in transaction mode. The plans
-- are generic (made once for any arguments), which plan_cache_mode = force_generic_plan
-- asks for: left to choose after five calls, PostgreSQL at times kept planning the second
-- statement anew for each call (its generic plan estimated dearer than the custom ones),
-- which was most of the cost of the claim. A generic plan is kept until the table's
-- statistics change (an ANALYZE, by hand or autovacuum's): made while the table held a few
-- rows, it read the whole table for each claim once the table had grown (a sequential scan
-- is the cheapest way to read two pages), and a burst of jobs was claimed at a fraction of
-- the speed until autovacuum came by. enable_seqscan = off (for this function alone) leaves
-- the planner the index paths only, which are the right plans at any size: the claim is
-- built on them. The plans walk the same indexes as the custom ones (<table>_keyed_idx per
-- key, <table>_due_idx for the free jobs, both stopping at the limit, the primary key for
-- the update; tests/test_postgres_flow.py checks them with auto_explain).
--
-- Its body is the fragments lock_keys and keyed_claim, as the two-statement claim before it
-- sent them, with the %(name)s parameters read as the arguments claim_name (the adapter
-- rewrites them: postgres.py, function_body). A change to either fragment therefore needs a
-- new migration that replaces the function (a test pins a digest of the body).
--
-- Why the order of the two statements still holds: the function is VOLATILE (it writes, so
-- it must be), and under READ COMMITTED each statement of a volatile function takes a
-- fresh snapshot when it starts, as the statements of the multi-statement string did; so
-- the count of the second statement sees every claim that committed before this one took
-- its key locks in the first, even one that committed after the calling statement started
-- (a stable function, or REPEATABLE READ, would count on the caller's older snapshot: the
-- test of the order shows the difference). The advisory locks are transaction-scoped: they
-- last until the caller's transaction ends, its own implicit one in autocommit.
--
-- It names the tables as every query here does: schema-qualified when a schema is
-- configured, else through the caller's search_path, as the plain claim does (PostgreSQL
-- plans the function's statements again when the search_path changes). It runs with the
-- caller's rights (SECURITY INVOKER): a role that may claim with plain statements may call
-- it (EXECUTE is granted to PUBLIC by default). Its result holds the jobs table's row
-- type, so dropping the table needs CASCADE (or dropping the function first); a column a
-- later version adds to the table is in its result at once.
CREATE OR REPLACE FUNCTION {claim_function}(
    claim_worker_id text, claim_queues text[], claim_limit integer, claim_lease float8,
    claim_nonce text
) RETURNS TABLE (out_keys bigint, out_job {jobs})
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
AS $queuebox_claim$
#variable_conflict use_column
DECLARE
    key_count bigint;
    held text;
BEGIN
    {% lock_keys %}
    INTO key_count, held;
    RETURN QUERY
    {% keyed_claim %}
    SELECT key_count, claimed::{jobs} FROM claimed;
    IF NOT FOUND AND key_count > 0 THEN
        RETURN QUERY SELECT key_count, NULL::{jobs};
    END IF;
END
$queuebox_claim$


-- name: migrate_v7
-- The plain claim as a function (claim calls it), for the reason migrate_v6 gives: sent as
-- text, its statement was parsed and planned on every claim; a function keeps one plan per
-- session and needs nothing of the protocol, so it works behind PgBouncer in transaction
-- mode where prepared statements may not (python -m benchmarks.pg_claim_plans compares
-- the two). Its plans are generic, with enable_seqscan = off, as in migrate_v6.
-- Merge and hash joins are off too: a generic plan cannot see the LIMIT, estimates that a
-- tenth of the table is claimed, and then joined the candidates to the table by walking
-- its whole primary key (20 ms per claim at 100,000 jobs); a nested loop of primary-key
-- lookups is right for any number a claim takes, and the statements join nothing else.
--
-- A generic plan cannot tell "all queues" from "these queues" (the test of in_queues is
-- made for the value bound at each call), so it would walk {due_index} for a worker of one
-- queue too, reading through every other queue's due jobs. The function has a statement
-- for each shape of the queue argument instead, each planned once: no queue test (every
-- queue, {due_index} in order), one queue ({queue_index} in order, from the queue's first
-- job), several queues ({due_index} with the queue as a filter, as the statement sent as
-- text did). Each one is the claim the statement sent as text was: the best due jobs
-- without a limit key that are not paused, none while a job with a key may run in these
-- queues (the one-time NOT EXISTS: then the store runs claim_limited), locked with the
-- fragment claim_set. A change to these fragments needs a new migration that replaces the
-- function, as for migrate_v6 (a test pins a digest of the body).
--
-- It is VOLATILE and SECURITY INVOKER, and named and qualified like the jobs table, as
-- migrate_v6's function is; it returns the table's row type.
CREATE OR REPLACE FUNCTION {plain_claim_function}(
    claim_worker_id text, claim_queues text[], claim_limit integer, claim_lease float8,
    claim_nonce text
) RETURNS SETOF {jobs}
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
SET enable_mergejoin = off SET enable_hashjoin = off
AS $queuebox_claim$
BEGIN
    IF claim_queues IS NULL THEN
        RETURN QUERY
        WITH candidates AS MATERIALIZED (
        {% free_due %}
          AND {% not_paused %}
          AND NOT EXISTS (SELECT 1 FROM {jobs} WHERE {% keyed %} AND {% not_paused %})
        {% plain_claim_end %};
    ELSIF cardinality(claim_queues) = 1 THEN
        RETURN QUERY
        WITH candidates AS MATERIALIZED (
        {% free_due %}
          AND queue = claim_queues[1] AND {% not_paused %}
          AND NOT EXISTS (
              SELECT 1 FROM {jobs}
              WHERE {% keyed %} AND queue = claim_queues[1] AND {% not_paused %}
          )
        {% plain_claim_end %};
    ELSE
        RETURN QUERY
        WITH candidates AS MATERIALIZED (
        {% free_due %}
          AND queue = ANY(claim_queues) AND {% not_paused %}
          AND NOT EXISTS (
              SELECT 1 FROM {jobs}
              WHERE {% keyed %} AND queue = ANY(claim_queues) AND {% not_paused %}
          )
        {% plain_claim_end %};
    END IF;
END
$queuebox_claim$

-- fragment: plain_claim_end
-- The end of each statement of the plain claim function (migrate_v7): the best candidates
-- in the order of the claim indexes, rows another claim holds skipped, and their lock.
ORDER BY priority, run_at, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
)
{% claim_set %}
RETURNING job.*

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
-- One call of the function {plain_claim_function} (migrate_v7): the best due jobs without
-- a limit key, skipping rows another claim holds, locked. greatest(run_at, lock_expires_at)
-- <= now() means "due, and unlocked or its lock expired". While a job with a key may run in
-- these queues it claims nothing (a one-time test, one seek in {keyed_index}): the store
-- then runs claim_limited, which orders the keyed jobs among the free ones
-- (postgres_flow.py). The queues are a list without repeats, or NULL for every queue.
SELECT claimed.*, 'running' AS state
FROM {plain_claim_function}(
    %(worker_id)s::text, %(queues)s::text[], %(limit)s::integer, %(lease)s::float8,
    %(nonce)s::text
) AS claimed

-- name: claim_statement
-- The plain claim as one statement sent as text, its queue test made for every shape of the
-- queue list at once: the claim before migrate_v7, kept to compare the function with
-- (python -m benchmarks.pg_claim_plans).
WITH candidates AS MATERIALIZED (
{% free_candidates %}
      AND NOT EXISTS (
          SELECT 1 FROM {jobs} WHERE {% keyed %} AND {% in_queues %} AND {% not_paused %}
      )
{% plain_claim_end %}

-- name: any_limited
-- Whether a job with a limit key may run in these queues: the plain claim takes none then.
SELECT EXISTS (
    SELECT 1 FROM {jobs} WHERE {% keyed %} AND {% in_queues %} AND {% not_paused %}
) AS found

-- name: claim_limited
-- The claim while jobs with a key may run in these queues: one call of the function
-- {claim_function} (migrate_v6), whose two statements PostgreSQL plans once per session
-- and keeps, instead of planning both on every claim. It returns the keys it found with
-- each job, and one row without a job when it found keys but claimed nothing (the store
-- then starts the next claim here); no row when there is no key at all.
SELECT claim.out_keys AS keys, (claim.out_job).*, 'running' AS state
FROM {claim_function}(
    %(worker_id)s::text, %(queues)s::text[], %(limit)s::integer, %(lease)s::float8,
    %(nonce)s::text
) AS claim

-- name: lock_limit_keys
-- The first statement of the claim function alone, as a bound statement (for EXPLAIN in
-- tests and benchmarks; the function runs the same SQL).
{% lock_keys %}

-- name: claim_held_keys
-- The second statement of the claim function alone (as lock_limit_keys).
{% keyed_claim %}
SELECT claimed.*, 'running' AS state FROM claimed

-- fragment: lock_keys
-- Every key of these queues, each with a transaction-scoped advisory lock on (table, queue,
-- key) tried without waiting. A key another claim holds is skipped by this claim, as FOR
-- UPDATE SKIP LOCKED skips a row: nobody waits, so no order of keys can deadlock. The keys
-- locked are left in a transaction-local setting for the next statement, which no other
-- claim can then change the counts of until this transaction ends. "keys" says whether any
-- key exists at all (the store goes back to the plain claim when none does).
SELECT count(*) AS keys,
       set_config('queuebox.limit_keys', coalesce(
           json_agg(json_build_array(queue, limit_key)) FILTER (WHERE locked), '[]'
       )::text, true) AS held
FROM (
    WITH RECURSIVE {% limit_keys %}
    SELECT queue, limit_key,
           pg_try_advisory_xact_lock(hashtextextended(
               {lock_space} || ':' || length(queue) || ':' || queue || limit_key, 0
           )) AS locked
    FROM waiting_key
    WHERE {% not_paused %}
) AS key

-- fragment: keyed_claim
-- The CTEs of the claim's second statement, up to the rows it locked ("claimed"); the
-- statement that includes them selects from "claimed". The best due jobs without a key (as claim) and, of each key whose lock lock_keys took, no
-- more due jobs than its slots, one ordered index walk each that stops there: a key at its
-- limit reads none of its jobs. The best %(limit)s of both are locked. Times that count
-- against limits are the clock after the key locks were taken (clock_timestamp, not the
-- transaction's start), so the starts of one key are stamped in the order its claims held
-- its lock.
WITH clock AS MATERIALIZED (SELECT clock_timestamp() AS now),
key AS MATERIALIZED (
    SELECT held ->> 0 AS queue, held ->> 1 AS limit_key
    FROM json_array_elements(
        coalesce(nullif(current_setting('queuebox.limit_keys', true), ''), '[]')::json
    ) AS held
),
{% key_slots %},
free_taken AS MATERIALIZED (
{% free_candidates %}
    ORDER BY priority, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
keyed_taken AS MATERIALIZED (
    SELECT taken.* FROM key_slot CROSS JOIN LATERAL (
        SELECT id, priority, run_at, locked_by AS previous_owner,
               lock_expires_at AT TIME ZONE 'UTC' AS previous_expiry
        FROM {jobs}
        WHERE queue = key_slot.queue AND limit_key = key_slot.limit_key AND {% keyed %}
          AND greatest(run_at, lock_expires_at) <= (SELECT now FROM clock)
        ORDER BY priority, run_at, id
        LIMIT least(key_slot.slots, %(limit)s)
        FOR UPDATE SKIP LOCKED
    ) AS taken
    WHERE key_slot.slots > 0
),
candidates AS MATERIALIZED (
    SELECT * FROM (SELECT * FROM free_taken UNION ALL SELECT * FROM keyed_taken) AS candidate
    ORDER BY priority, run_at, id
    LIMIT %(limit)s
),
claimed AS (
{% claim_set %}
    RETURNING job.*
),
started AS (
    INSERT INTO {starts} (queue, limit_key, expires_at)
    SELECT queue, limit_key, (SELECT now FROM clock) + make_interval(secs => rate_per)
    FROM claimed WHERE rate_count IS NOT NULL
),
pruned AS (
    DELETE FROM {starts} AS started USING key
    WHERE started.queue = key.queue AND started.limit_key = key.limit_key
      AND started.expires_at <= (SELECT now FROM clock)
)

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
-- Seconds until the next job of these queues can be claimed (<= 0: now; NULL: none). A
-- paused queue has none. A key with slots left is due with its first job; a key at its
-- limit when a live lock lapses or a start leaves the window (a run that ends frees a slot
-- too, which its own worker's next claim sees at once).
WITH RECURSIVE clock AS (SELECT now() AS now),
{% limit_keys %},
key AS MATERIALIZED (SELECT queue, limit_key FROM waiting_key WHERE {% not_paused %}),
{% key_slots %},
due(at) AS (
    SELECT min(greatest(run_at, lock_expires_at)) FROM {jobs}
    WHERE failed_at IS NULL AND completed_at IS NULL AND cancelled_at IS NULL
      AND limit_key IS NULL AND {% in_queues %} AND {% not_paused %}
    UNION ALL
    SELECT CASE WHEN key_slot.slots > 0 THEN (
        SELECT min(greatest(run_at, lock_expires_at)) FROM {jobs}
        WHERE queue = key_slot.queue AND limit_key = key_slot.limit_key AND {% keyed %}
    ) ELSE least((
        SELECT min(lock_expires_at) FROM {jobs}
        WHERE queue = key_slot.queue AND limit_key = key_slot.limit_key
          AND locked_at IS NOT NULL AND lock_expires_at > now()
    ), (
        SELECT min(expires_at) FROM {starts}
        WHERE queue = key_slot.queue AND limit_key = key_slot.limit_key AND expires_at > now()
    )) END
    FROM key_slot
)
SELECT extract(epoch FROM min(at) - now())::float8 AS wait FROM due

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

-- name: pause
INSERT INTO {paused} (queue) VALUES (%(queue)s) ON CONFLICT (queue) DO NOTHING
RETURNING queue

-- name: resume
-- A resume wakes the queue's idle workers, as new work does.
WITH changed AS (
    DELETE FROM {paused} WHERE queue = %(queue)s RETURNING queue
)
{% notify_changed %}

-- name: paused_queues
SELECT queue FROM {paused} ORDER BY queue

-- name: delete
DELETE FROM {jobs} WHERE id = %(id)s

-- name: clear
DELETE FROM {jobs} WHERE %(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[])
