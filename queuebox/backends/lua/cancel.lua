-- cancel: stop a job for good (queuebox.cancel), in one atomic step.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV[1] job number, ARGV[2] wake channel (a lapsed limited run's key may open: idle
-- workers of the queue are woken).
-- A waiting job (scheduled or ready), or a running one whose lock lapsed (its worker died),
-- is cancelled at once: out of its bucket, its unique key freed, cancelled_at = now, kept in
-- the cancelled set. A running job with a live lock keeps its lock and key: it gets
-- cancelled_at and joins the cancelling set, where its worker finds it (cancel_requested)
-- and stops the run (mark_cancelled). A job that ended (failed, completed, cancelled) or
-- whose record no script can read is left alone.
-- Returns 'cancelled', 'requested', 'finished' or 'not_found' (CancelOutcome's values).
local n = tonumber(ARGV[1])
local r, unreadable = load_job(n)
if unreadable then return 'finished' end -- shown as failed everywhere
if not r then return 'not_found' end
if r[13] or r[14] or (r[16] and not r[8]) then return 'finished' end
local now = now_ms()
if r[8] and r[10] > now then
  if not r[16] then
    r[6], r[16] = now, now
    save_job(n, r)
    redis.call('SADD', Q.cancelling, ARGV[1])
  end
  return 'requested'
end
local lapsed_request = r[16] and r[8]
wake_if(ARGV[2], Q.name, cancel_now(n, r, now))
if lapsed_request then return 'finished' end -- asked before its worker died: it is cancelled
return 'cancelled'
