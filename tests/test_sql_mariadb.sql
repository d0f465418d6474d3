-- Named queries of the test-only MariaDB dialect (tests/test_sql_mariadb.py).
--
-- {jobs} and {migrations} are the (backquoted) table names the adapter writes in; %(name)s
-- are PyMySQL parameters, so a literal percent sign is written %%. Lists are written as
-- PyMySQL writes a tuple, ('a', 'b'), so that "queue IN %(queues)s" is an index range; for
-- "every queue" (NULL) the dialect passes %(any_queue)s true (and %(any_state)s likewise). Times are BIGINT
-- microseconds since 1970 from the server's clock ({% store_now %}: the session time zone
-- is UTC, and NOW(6) is fixed for one statement).
-- MariaDB has FOR UPDATE SKIP LOCKED and INSERT ... RETURNING but no UPDATE ... RETURNING,
-- so the dialect claims in three statements (claim_candidates, claim_lock, claim_read).

-- fragment: store_now
CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED)

-- fragment: state
CASE WHEN job.completed_at IS NOT NULL THEN 'completed'
     WHEN job.failed_at IS NOT NULL THEN 'failed'
     WHEN job.locked_at IS NOT NULL THEN 'running'
     WHEN job.run_at <= {% store_now %} THEN 'ready'
     ELSE 'scheduled' END

-- fragment: in_queues
(%(any_queue)s OR queue IN %(queues)s)

-- fragment: unlock
locked_at = NULL, locked_by = NULL, lock_expires_at = NULL, lock_token = NULL

-- fragment: owned
WHERE id = %(id)s AND lock_token = %(token)s

-- fragment: insert
INTO {jobs} (name, handler, queue, priority, run_at, created_at, updated_at, unique_key)
VALUES (%(name)s, %(handler)s, %(queue)s, %(priority)s,
        COALESCE(%(run_at)s, {% store_now %} + %(delay)s), {% store_now %}, {% store_now %},
        %(unique_key)s)

-- name: begin
START TRANSACTION

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: session_setup
-- READ COMMITTED: a claim keeps no lock on the rows it read but did not take, so that
-- SKIP LOCKED in another session does not skip them.
SET time_zone = '+00:00', tx_isolation = 'READ-COMMITTED'

-- name: schema_present
SELECT COUNT(*) > 0 AS present FROM information_schema.tables
WHERE table_schema = DATABASE() AND table_name = {migrations_name}

-- name: schema_version
SELECT COALESCE(MAX(version), 0) AS version FROM {migrations}

-- name: migrate_prepare
CREATE TABLE IF NOT EXISTS {migrations} (version INT PRIMARY KEY)

-- name: record_version
INSERT IGNORE INTO {migrations} (version) VALUES (%(version)s)

-- name: migrate_v1
-- utf8mb4_bin: queue names and keys compare exactly, case included. NULL keys never clash
-- in a unique index, so it holds only the keys of waiting and running jobs.
CREATE TABLE IF NOT EXISTS {jobs} (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    handler LONGTEXT NOT NULL,
    queue VARCHAR(191) NOT NULL,
    priority INT NOT NULL,
    run_at BIGINT NOT NULL,
    attempts INT NOT NULL DEFAULT 0,
    locked_at BIGINT NULL,
    locked_by VARCHAR(255) NULL,
    lock_expires_at BIGINT NULL,
    lock_token VARCHAR(64) NULL,
    last_error LONGTEXT NULL,
    failed_at BIGINT NULL,
    completed_at BIGINT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    unique_key VARCHAR(191) NULL,
    cancelled_at BIGINT NULL,
    KEY due (priority, run_at, id),
    KEY queue_due (queue, priority, run_at, id),
    UNIQUE KEY one_per_key (queue, unique_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin

-- name: now
SELECT {% store_now %} AS now

-- name: insert_jobs
INSERT {% insert %}
RETURNING *, IF(run_at <= created_at, 'ready', 'scheduled') AS state

-- name: insert_unique_jobs
-- IGNORE: a held key inserts nothing and returns no row; the SQL base reads the holder.
INSERT IGNORE {% insert %}
RETURNING *, IF(run_at <= created_at, 'ready', 'scheduled') AS state

-- name: unique_holders
SELECT job.*, {% state %} AS state FROM {jobs} AS job
WHERE queue = %(queue)s AND unique_key = %(unique_key)s

-- name: claim_candidates
-- The queue index, so that a claim never reads (and SKIP LOCKED never trips over) the rows
-- of other queues that another session is claiming.
SELECT id FROM {jobs} FORCE INDEX (queue_due)
WHERE failed_at IS NULL AND completed_at IS NULL AND run_at <= {% store_now %}
  AND (locked_at IS NULL OR lock_expires_at <= {% store_now %}) AND {% in_queues %}
ORDER BY priority, run_at, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: claim_lock
-- Assignments run left to right and see the values already assigned: last_error first,
-- while locked_by and lock_expires_at still hold the lost worker's lock.
UPDATE {jobs}
SET last_error = IF(locked_by IS NULL, last_error, CONCAT(
        'WorkerLost: the lock held by worker ', locked_by, ' expired at ',
        DATE_FORMAT(FROM_UNIXTIME(lock_expires_at DIV 1000000), '%%Y-%%m-%%dT%%H:%%i:%%s'),
        IF(lock_expires_at MOD 1000000 = 0, '',
           CONCAT('.', LPAD(lock_expires_at MOD 1000000, 6, '0'))),
        '+00:00 before the job finished; the job was claimed again')),
    attempts = attempts + 1,
    locked_at = {% store_now %},
    locked_by = %(worker_id)s,
    lock_expires_at = {% store_now %} + %(lease)s,
    lock_token = CONCAT(%(nonce)s, '.', id),
    updated_at = {% store_now %}
WHERE id IN %(ids)s

-- name: claim_read
SELECT *, 'running' AS state FROM {jobs}
WHERE id IN %(ids)s AND lock_token = CONCAT(%(nonce)s, '.', id)

-- name: delete_locked
DELETE FROM {jobs} {% owned %}

-- name: complete_keep
UPDATE {jobs}
SET completed_at = {% store_now %}, updated_at = {% store_now %}, {% unlock %}, unique_key = NULL
{% owned %}

-- name: reschedule
UPDATE {jobs}
SET run_at = {% store_now %} + %(delay)s, updated_at = {% store_now %}, last_error = %(error)s,
    {% unlock %}
{% owned %}

-- name: fail_keep
UPDATE {jobs}
SET failed_at = {% store_now %}, updated_at = {% store_now %}, last_error = %(error)s,
    {% unlock %}, unique_key = NULL
{% owned %}

-- name: release
UPDATE {jobs}
SET attempts = GREATEST(attempts - 1, 0), updated_at = {% store_now %}, {% unlock %}
{% owned %}

-- name: extend
UPDATE {jobs} SET lock_expires_at = {% store_now %} + %(lease)s, updated_at = {% store_now %}
{% owned %}

-- name: next_due
SELECT CAST((MIN(IF(locked_at IS NULL, run_at, lock_expires_at)) - {% store_now %})
            / 1000000 AS DOUBLE) AS wait
FROM {jobs} WHERE failed_at IS NULL AND completed_at IS NULL AND {% in_queues %}

-- name: changes
-- Nothing cheap to poll: waiting sleeps until the next due time or the timeout.

-- name: listen
-- No notifications in MariaDB.

-- name: get
SELECT job.*, {% state %} AS state FROM {jobs} AS job WHERE id = %(id)s

-- name: list_jobs
SELECT * FROM (SELECT job.*, {% state %} AS state FROM {jobs} AS job WHERE {% in_queues %}) AS t
WHERE %(any_state)s OR state IN %(states)s
ORDER BY queue, priority, run_at, id
LIMIT %(limit)s OFFSET %(offset)s

-- name: counts
SELECT queue, {% state %} AS state, COUNT(*) AS n FROM {jobs} AS job GROUP BY queue, state

-- name: retry
UPDATE {jobs}
SET failed_at = NULL, completed_at = NULL, attempts = 0, run_at = {% store_now %},
    updated_at = {% store_now %}
WHERE id = %(id)s AND locked_at IS NULL

-- name: delete
DELETE FROM {jobs} WHERE id = %(id)s

-- name: clear
DELETE FROM {jobs} WHERE {% in_queues %}
