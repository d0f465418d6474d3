-- clear: delete every job of one queue, and with them the unique keys they held. The meta hash
-- (job numbers, registration) stays, so job ids are never reused, and so do the recurring
-- ticks (KEYS[9]): clearing jobs does not make a recurring job run its past ticks again.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV: none.
-- Returns how many jobs were deleted.
local count = redis.call('HLEN', Q.jobs)
for _, pair in ipairs({{Q.sidx, Q.sbucket}, {Q.ridx, Q.rbucket}}) do
  local buckets = redis.call('ZRANGE', pair[1], 0, -1)
  for i = 1, #buckets, 500 do
    local batch = {}
    for j = i, math.min(i + 499, #buckets) do batch[#batch + 1] = pair[2] .. buckets[j] end
    redis.call('UNLINK', tunpack(batch))
  end
end
redis.call('UNLINK', Q.jobs, Q.sidx, Q.ridx, Q.running, Q.failed, Q.done, Q.unique, Q.wake,
             Q.cancelled, Q.cancelling)
return count
