-- enqueue: store one or more new jobs of one queue, each ready or scheduled by its run_at.
-- KEYS: the seven keys of the queue (see lib.lua).
-- ARGV[1] wake channel, ARGV[2] queue name (published on the channel),
-- then five values per job: name, handler, priority, run_at in ms ('' for now + delay),
-- delay in ms.
-- Returns {now, registered (1 when the queue is already in the registry), then per job:
-- job number, run_at}.
local now = now_ms()
local out = {int(now), redis.call('HEXISTS', Q.meta, 'reg')}
for i = 3, #ARGV, 5 do
  local n = redis.call('HINCRBY', Q.meta, 'seq', 1)
  local run_at = now + tonumber(ARGV[i + 4])
  if ARGV[i + 3] ~= '' then run_at = tonumber(ARGV[i + 3]) end
  local r = {ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), now, run_at, now, 0,
             false, false, false, false, false, false, false}
  save_job(n, r)
  place(n, r, now)
  out[#out + 1] = int(n)
  out[#out + 1] = int(run_at)
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return out
