-- clear: delete every job of one queue, and with them the unique keys they held and the
-- structures of its limit keys. The meta hash (job numbers, registration, pause) stays, so
-- job ids are never reused and a paused queue stays paused, and so do the recurring ticks
-- (KEYS[9]: clearing jobs does not make a recurring job run its past ticks again) and the
-- throughput history.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV: none.
-- Returns how many jobs were deleted.
local count = redis.call('HLEN', Q.jobs)
local doomed = {}
local function doom(key)
  doomed[#doomed + 1] = key
  if #doomed == 500 then
    redis.call('UNLINK', tunpack(doomed))
    doomed = {}
  end
end
local sets, keys = {{Q.sidx, Q.sbucket}, {Q.ridx, Q.rbucket}}, {}
for _, key in ipairs(redis.call('SMEMBERS', Q.klist)) do
  local index, buckets, running, starts = limit_keys(key)
  sets[#sets + 1] = {index, buckets}
  keys[#keys + 1], keys[#keys + 2], keys[#keys + 3] = index, running, starts
end
for _, pair in ipairs(sets) do -- the buckets first: their names are read from the indexes
  for _, member in ipairs(redis.call('ZRANGE', pair[1], 0, -1)) do doom(pair[2] .. member) end
end
for _, key in ipairs(keys) do doom(key) end
if doomed[1] then redis.call('UNLINK', tunpack(doomed)) end
redis.call('UNLINK', Q.jobs, Q.sidx, Q.ridx, Q.running, Q.failed, Q.done, Q.unique, Q.wake,
             Q.cancelled, Q.cancelling, Q.snum, Q.rnum, Q.kidx, Q.ktimer, Q.klist)
return count
