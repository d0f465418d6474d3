-- delete: remove one job whatever its state, freeing its unique key.
-- KEYS: the nine keys of the queue (see lib.lua).
-- ARGV[1] job number.
-- Returns 1, or 0 when there was no such job.
local n = tonumber(ARGV[1])
local r = load_job(n)
if not r then return 0 end
unplace(n, r)
free_unique(n, r)
redis.call('HDEL', Q.jobs, ARGV[1])
return 1
