-- peek: the best claimable jobs of one queue, for a worker that claims across queues.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV[1] how many candidates K.
-- Moves due scheduled jobs and expired locks to ready (as claim does), then returns, without
-- locking them, the K best ready jobs: {now, then per job: ready score (priority * 2^42 +
-- run_at), job number, created_at}. The client compares queues and then calls claim. The
-- open limit keys' jobs are candidates too, whether their limits let them all start or not;
-- a paused queue has no candidates.
local now = now_ms()
if paused() then return {int(now)} end
promote_and_reclaim(now)
local k = tonumber(ARGV[1])
local candidates = {}
-- the best entries of the buckets of index: at most k per bucket, from its k best buckets
local function gather(index, buckets)
  for _, member in ipairs(redis.call('ZRANGE', index, 0, k - 1)) do
    local offset = tonumber(string.match(member, '^(-?%d+):')) * PRIORITY_SHIFT
    local entries = redis.call('ZRANGE', buckets .. member, 0, k - 1, 'WITHSCORES')
    for i = 1, #entries, 2 do
      local n = bucket_number(member) * BUCKET + tonumber(entries[i])
      candidates[#candidates + 1] = {offset + tonumber(entries[i + 1]), n}
    end
  end
end
gather(Q.ridx, Q.rbucket)
for _, key in ipairs(redis.call('ZRANGE', Q.kidx, 0, k - 1)) do
  gather(limit_keys(key)) -- (the claim takes no more than the key's limits let start)
end
table.sort(candidates, function(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  return a[2] < b[2]
end)
local out = {int(now)}
for i = 1, math.min(k, #candidates) do
  local r = load_job(candidates[i][2])
  out[#out + 1] = int(candidates[i][1])
  out[#out + 1] = int(candidates[i][2])
  out[#out + 1] = int(r and r[4] or 0)
end
return out
