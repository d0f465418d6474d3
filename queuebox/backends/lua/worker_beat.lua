-- worker_beat: record or renew one worker in the registry (WorkerRegistry.beat), on Redis's
-- clock. A script of its own: it touches no queue, so it is not prepended with lib.lua.
-- KEYS[1] <prefix>:workers  hash: worker id -> "<beat ms> <ttl ms> <record>", the record
--                           being WorkerInfo.to_json's text
-- ARGV[1] worker id, ARGV[2] ttl in ms (lost when no beat came for that long), ARGV[3] the
-- worker's record.
-- Returns the beat's time in ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d %d %s', now, tonumber(ARGV[2]), ARGV[3]))
return now
