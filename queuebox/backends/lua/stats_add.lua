-- stats_add: add workers' tallies to one queue's throughput history (ThroughputHistory).
-- KEYS: the eleven keys of the queue (see lib.lua); the history is kept beside them:
--   <base>minutes     zset: minute (ms) -> minute, the minutes that have a tally
--   <base>m:<minute>  hash: "<job name>|<what>" -> count, where what is s (succeeded),
--                     r (retried), f (failed), c (cancelled), t (run time sum, seconds) or
--                     b<i> (runs in run-time bucket i); it expires retention after its minute
-- ARGV[1] retention in ms, ARGV[2] the tallies packed by the client: a msgpack array of
-- arrays {minute ms, job name, succeeded, retried, failed, cancelled, run time sum as text,
-- then one count per run-time bucket}.
-- Each count is added with HINCRBY (the sum with HINCRBYFLOAT), so tallies added at once by
-- many workers all count. A minute older than retention is not stored, and the index forgets
-- such minutes. Returns how many tallies were stored.
local now = now_ms()
local retention = tonumber(ARGV[1])
local oldest = now - retention
local index = BASE .. 'minutes'
local stored = 0
local whats = {'s', 'r', 'f', 'c'}
for _, tally in ipairs(cmsgpack.unpack(ARGV[2])) do
  local minute = tonumber(tally[1])
  if minute >= oldest then
    local key = BASE .. 'm:' .. int(minute)
    local name = tally[2] .. '|'
    for i, what in ipairs(whats) do
      if tally[2 + i] ~= 0 then redis.call('HINCRBY', key, name .. what, tally[2 + i]) end
    end
    if tonumber(tally[7]) ~= 0 then redis.call('HINCRBYFLOAT', key, name .. 't', tally[7]) end
    for i = 8, #tally do
      if tally[i] ~= 0 then redis.call('HINCRBY', key, name .. 'b' .. (i - 8), tally[i]) end
    end
    redis.call('PEXPIREAT', key, int(minute + retention + 60000))
    redis.call('ZADD', index, int(minute), int(minute))
    stored = stored + 1
  end
end
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. int(oldest))
return stored
