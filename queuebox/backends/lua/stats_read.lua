-- stats_read: one queue's throughput history from a minute on (ThroughputHistory.stats).
-- Read-only.
-- KEYS: the eleven keys of the queue (see lib.lua); the history is kept beside them (see
-- stats_add.lua).
-- ARGV[1] the first minute wanted (ms), ARGV[2] retention in ms (older minutes are not read).
-- Returns {minute, its hash as HGETALL gives it (one array), minute, ...} in minute order.
local now = now_ms()
local first = math.max(tonumber(ARGV[1]), now - tonumber(ARGV[2]))
local out = {}
local minutes = redis.call('ZRANGEBYSCORE', BASE .. 'minutes', int(first), '+inf')
for _, minute in ipairs(minutes) do
  local tallies = redis.call('HGETALL', BASE .. 'm:' .. minute)
  if tallies[1] then
    out[#out + 1] = minute
    out[#out + 1] = tallies
  end
end
return out
