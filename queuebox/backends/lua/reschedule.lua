-- reschedule: the attempt raised; unlock, record the error, run again at now + delay.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV[1] job number, ARGV[2] lock token, ARGV[3] delay in ms (decided by the core; a run_at
-- after 9999-12-31T23:59:59Z is cut to it),
-- ARGV[4] error text, ARGV[5] wake channel, ARGV[6] queue name.
-- A job whose cancel was asked is cancelled instead, with the error recorded: never run again.
-- Returns 1, or 0 (changing nothing) when the token is not the job's current lock token.
local n = tonumber(ARGV[1])
local r = load_job(n)
if not owned(r, ARGV[2]) then return 0 end
local now = now_ms()
if r[16] then
  wake_if(ARGV[5], ARGV[6], cancel_now(n, r, now, ARGV[4]))
  return 1
end
redis.call('ZREM', Q.running, ARGV[1])
unlock(r)
r[5], r[6], r[12] = math.min(now + tonumber(ARGV[3]), RUN_AT_LATEST), now, ARGV[4]
save_job(n, r)
wake(ARGV[5], ARGV[6], wait_again(n, r, now))
return 1
