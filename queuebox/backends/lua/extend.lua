-- extend: renew a held lock until now + lease.
-- KEYS: the nine keys of the queue (see lib.lua).
-- ARGV[1] job number, ARGV[2] lock token, ARGV[3] lease in ms.
-- Returns 1, or 0 (changing nothing) when the token is not the job's current lock token.
local n = tonumber(ARGV[1])
local r = load_job(n)
if not owned(r, ARGV[2]) then return 0 end
local now = now_ms()
r[6], r[10] = now, now + tonumber(ARGV[3])
save_job(n, r)
redis.call('ZADD', Q.running, int(r[10]), ARGV[1])
return 1
