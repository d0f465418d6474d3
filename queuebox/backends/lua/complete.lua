-- complete: the job succeeded; delete it, or keep it as completed. Either way its unique key
-- (if any) is freed.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV[1] job number, ARGV[2] lock token, ARGV[3] '1' to keep the job as completed,
-- ARGV[4] wake channel (a limited job's slot frees: idle workers of its queue are woken).
-- A cancel asked meanwhile is moot: the job ran to its end.
-- Returns 1, or 0 (changing nothing) when the token is not the job's current lock token.
local n = tonumber(ARGV[1])
local r = load_job(n)
if not owned(r, ARGV[2]) then return 0 end
free_unique(n, r)
redis.call('ZREM', Q.running, ARGV[1])
if r[16] then redis.call('SREM', Q.cancelling, ARGV[1]) end
local now = now_ms()
if ARGV[3] ~= '1' then
  redis.call('HDEL', Q.jobs, ARGV[1])
else
  unlock(r)
  r[6], r[14] = now, now
  save_job(n, r)
  redis.call('ZADD', Q.done, ARGV[1], ARGV[1])
end
if limited(r) then wake_if(ARGV[4], Q.name, free_slot(n, r, now)) end
return 1
