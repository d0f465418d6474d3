-- claim: lock up to N due jobs of one queue for a worker, best first.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV[1] worker id, ARGV[2] limit N, ARGV[3] lease in ms, ARGV[4] a fresh random secret
-- (at least 128 bits) for this call: each job's lock token is the secret, '-', its number, so
-- every claim of a job gives it a new, unguessable token.
-- First moves due scheduled jobs to ready and gives jobs whose lock expired back to ready
-- (noting the lost owner in last_error), or to the cancelled set when a cancel was asked;
-- then pops the best ready jobs (priority, run_at, job number), adds an attempt, and locks
-- each until now + lease. A job keeps its unique key
-- while it runs and when its lock is reclaimed.
-- A record that cannot be read is put in the failed set as it is, and not claimed.
-- Returns {now, how many jobs were claimed, then one string: job number, record, job number,
-- record... each a msgpack value (the records as stored, see lib.lua)}: the client unpacks
-- them all in one call.
local now = now_ms()
promote_and_reclaim(now)
local limit = tonumber(ARGV[2])
local expires = now + tonumber(ARGV[3])
local worker, expiry, prefix = ARGV[1], int(expires), ARGV[4] .. '-'
local out = {}
local taken = 0
while taken < limit do
  local numbers = bs_popmany(Q.ridx, Q.rbucket, limit - taken)
  if not numbers[1] then break end
  local raws = {}
  for i = 1, #numbers, 500 do
    local chunk = redis.call('HMGET', Q.jobs, tunpack(numbers, i, math.min(i + 499, #numbers)))
    for _, raw in ipairs(chunk) do raws[#raws + 1] = raw end
  end
  local saved, running = {}, {}
  for i, n in ipairs(numbers) do
    local raw = raws[i]
    local member = int(n)
    local ok, packed = false, nil
    if raw then ok, packed = pcall(lock_record, raw, now, worker, expires, prefix .. member) end
    if raw and not ok then
      -- A record that is not what lib.lua writes (hand-edited, corrupted): keep it in the
      -- failed set rather than in no set, and go on with the other jobs of the batch.
      redis.call('ZADD', Q.failed, int(now), member)
    elseif raw then -- (a bucket entry without a record is dropped)
      taken = taken + 1
      local k = #saved
      saved[k + 1], saved[k + 2] = member, packed
      running[k + 1], running[k + 2] = expiry, member
      local o = #out
      out[o + 1], out[o + 2] = cmsgpack.pack(n), packed
    end
  end
  call_chunked('HSET', Q.jobs, saved, 500)
  call_chunked('ZADD', Q.running, running, 500)
end
if redis.call('EXISTS', Q.ridx) == 0 then redis.call('DEL', Q.wake) end
return {int(now), taken, table.concat(out)}
