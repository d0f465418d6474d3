-- counts: how many jobs of one queue are in each state, by the store's clock. Read-only.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV: none.
-- Returns {total, running, failed, completed, ready, cancelled}; scheduled is the rest. A job
-- whose run_at has passed counts as ready even before a claim moves it out of its scheduled
-- bucket; a running job whose cancel was asked counts as cancelled once its lock lapsed (its
-- worker died), before a claim moves it to the cancelled set. A job held back by its limit
-- key counts as ready.
local now = now_ms()
local ready = 0
for _, member in ipairs(redis.call('ZRANGE', Q.ridx, 0, -1)) do
  ready = ready + redis.call('ZCARD', Q.rbucket .. member)
end
for _, key in ipairs(redis.call('SMEMBERS', Q.klist)) do -- held back by a limit or not
  local index, buckets = limit_keys(key)
  for _, member in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    ready = ready + redis.call('ZCARD', buckets .. member)
  end
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', Q.sidx, '-inf', int(now))) do
  ready = ready + redis.call('ZCOUNT', Q.sbucket .. member, '-inf', int(now))
end
local running, cancelled = redis.call('ZCARD', Q.running), redis.call('ZCARD', Q.cancelled)
for _, member in ipairs(redis.call('SMEMBERS', Q.cancelling)) do
  local expiry = redis.call('ZSCORE', Q.running, member)
  if expiry and tonumber(expiry) <= now then
    running, cancelled = running - 1, cancelled + 1
  end
end
return {redis.call('HLEN', Q.jobs), running, redis.call('ZCARD', Q.failed),
        redis.call('ZCARD', Q.done), ready, cancelled}
