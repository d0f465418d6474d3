-- worker_list: every worker in the registry (WorkerRegistry.workers), dropping those whose
-- beats stopped for longer than their ttl and the time lost workers are kept. A script of its
-- own: it touches no queue, so it is not prepended with lib.lua.
-- KEYS[1] <prefix>:workers  hash: worker id -> "<beat ms> <ttl ms> <record>" (worker_beat.lua)
-- ARGV[1] how long a lost worker is kept, in ms.
-- Returns {now, then per worker kept: id, its value as stored}. A value that does not start
-- with two numbers is returned as it is (the client skips it: it is not a worker queuebox
-- wrote).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local kept = tonumber(ARGV[1])
local out = {string.format('%d', now)}
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local beat, ttl = string.match(entries[i + 1], '^(%d+) (%d+) ')
  if beat and now - tonumber(beat) > tonumber(ttl) + kept then
    redis.call('HDEL', KEYS[1], entries[i])
  else
    out[#out + 1] = entries[i]
    out[#out + 1] = entries[i + 1]
  end
end
return out
