-- claim: lock up to N due jobs of one queue for a worker, best first.
-- KEYS: the nine keys of the queue (see lib.lua).
-- ARGV[1] worker id, ARGV[2] limit N, ARGV[3] lease in ms, ARGV[4..3+N] one fresh lock token
-- per job.
-- First moves due scheduled jobs to ready and gives jobs whose lock expired back to ready
-- (noting the lost owner in last_error); then pops the best ready jobs (priority, run_at, job
-- number), adds an attempt, and locks each until now + lease. A job keeps its unique key
-- while it runs and when its lock is reclaimed.
-- Returns {now, then per job: job number, packed record}.
local now = now_ms()
promote_and_reclaim(now)
local limit = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local out = {int(now)}
local taken = 0
while taken < limit do
  local n = bs_popmin(Q.ridx, Q.rbucket, nil)
  if not n then break end
  local r = load_job(n)
  if r then
    taken = taken + 1
    r[6] = now
    r[7] = r[7] + 1
    r[8], r[9], r[10], r[11] = now, ARGV[1], now + lease, ARGV[3 + taken]
    redis.call('ZADD', Q.running, int(r[10]), int(n))
    out[#out + 1] = int(n)
    out[#out + 1] = save_job(n, r)
  end
end
return out
