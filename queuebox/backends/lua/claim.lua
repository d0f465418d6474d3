-- claim: lock up to N due jobs of one queue for a worker, best first.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV[1] worker id, ARGV[2] limit N, ARGV[3] lease in ms, ARGV[4] a fresh random secret
-- (at least 128 bits) for this call: each job's lock token is the secret, '-', its number, so
-- every claim of a job gives it a new, unguessable token.
-- A paused queue gives nothing. Otherwise it first moves due scheduled jobs to ready and
-- gives jobs whose lock expired back to ready (noting the lost owner in last_error), or to
-- the cancelled set when a cancel was asked; then pops the best ready jobs (priority, run_at,
-- job number), adds an attempt, and locks each until now + lease. A job keeps its unique key
-- while it runs and when its lock is reclaimed.
-- Jobs with a flow-control limit come from their key's own buckets (lib_limits.lua): the
-- queue's ready buckets and the open keys (kidx) are merged by score (on a tie the queue's
-- jobs go first); a key that reaches its limit leaves kidx in one step, so the jobs it holds
-- back are never walked. A job held back spends no attempt.
-- A record that cannot be read is put in the failed set as it is, and not claimed.
-- Returns {now, how many jobs were claimed, then one string: job number, record, job number,
-- record... each a msgpack value (the records as stored, see lib.lua)}: the client unpacks
-- them all in one call.
local now = now_ms()
if paused() then
  redis.call('DEL', Q.wake)
  return {int(now), 0, ''}
end
promote_and_reclaim(now)
local limit = tonumber(ARGV[2])
local expires = now + tonumber(ARGV[3])
local worker, expiry, prefix = ARGV[1], int(expires), ARGV[4] .. '-'
local start_tag = string.sub(ARGV[4], 1, 10) .. ':' -- a start's member in a rate window
local out = {}
local taken = 0

-- Lock the jobs numbers (popped from the queue's ready buckets) and add them to out.
local function lock_popped(numbers)
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
      redis.call('ZADD', Q.failed, member, member)
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

while taken < limit do
  local open_key = redis.call('ZRANGE', Q.kidx, 0, 0, 'WITHSCORES')
  if not open_key[1] then -- no limited job can start: the queue's own jobs, as fast as ever
    local numbers = bs_popmany(Q.ridx, Q.rbucket, limit - taken)
    if not numbers[1] then break end
    lock_popped(numbers)
  else
    local numbers = bs_popmany(Q.ridx, Q.rbucket, limit - taken, tonumber(open_key[2]))
    if numbers[1] then
      lock_popped(numbers)
    else
      local n, r = key_take(open_key[1], now)
      if n then
        r[6], r[7] = now, r[7] + 1
        r[8], r[9], r[10], r[11] = now, worker, expires, prefix .. int(n)
        local packed = save_job(n, r)
        redis.call('ZADD', Q.running, expiry, int(n))
        key_started(n, r, now, expires, start_tag .. int(n))
        taken = taken + 1
        local o = #out
        out[o + 1], out[o + 2] = cmsgpack.pack(n), packed
      end
    end
  end
end
if redis.call('EXISTS', Q.ridx, Q.kidx) == 0 then redis.call('DEL', Q.wake) end
return {int(now), taken, table.concat(out)}
