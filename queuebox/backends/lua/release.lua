-- release: give back a claimed job that did not start; the attempt is not spent.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV[1] job number, ARGV[2] lock token, ARGV[3] wake channel, ARGV[4] queue name.
-- run_at is left as it was, so the job is ready again at once; a job whose cancel was asked
-- is cancelled instead (it never started).
-- Returns 1, or 0 (changing nothing) when the token is not the job's current lock token.
local n = tonumber(ARGV[1])
local r = load_job(n)
if not owned(r, ARGV[2]) then return 0 end
local now = now_ms()
if r[16] then
  wake_if(ARGV[3], ARGV[4], cancel_now(n, r, now))
  return 1
end
redis.call('ZREM', Q.running, ARGV[1])
unlock(r)
r[6], r[7] = now, math.max(0, r[7] - 1)
save_job(n, r)
wake(ARGV[3], ARGV[4], wait_again(n, r, now))
return 1
