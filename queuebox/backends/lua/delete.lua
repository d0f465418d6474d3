-- delete: remove one job whatever its state, freeing its unique key.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV[1] job number, ARGV[2] wake channel (deleting a running limited job frees its slot:
-- idle workers of the queue are woken).
-- Returns 1, or 0 when there was no such job.
local n = tonumber(ARGV[1])
local r, unreadable = load_job(n)
if r then
  wake_if(ARGV[2], Q.name, unplace(n, r, now_ms()))
  free_unique(n, r)
elseif unreadable then
  -- Not a record (see load_job): the claim path keeps such jobs in the failed set; a
  -- bucket entry left behind is dropped by the claim that meets it.
  unlist(n)
else
  return 0
end
redis.call('HDEL', Q.jobs, ARGV[1])
return 1
