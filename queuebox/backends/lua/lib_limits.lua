-- lib_limits.lua: flow control, prepended to every script after lib.lua (whose KEYS and Q it
-- uses). Its keys are the queue's, in the queue's hash slot (<base> is <prefix>:{<queue>}:):
--
-- <base>kidx    zset: limit key -> ready score of its best ready job, for the keys that may
--               start a run now ("open" keys). A key at its limit is not in it, so a claim
--               skips it in one step however many of its jobs wait.
-- <base>ktimer  zset: limit key -> when to look at the key again (its rate window lets a start
--               in, or its log of starts expires)
-- <base>klist   set: every limit key that has structures below (for clear and counts)
-- <base>ki:<K>  zset: K's ready buckets -> best score, as ridx is for the queue's other jobs
-- <base>kb:<K>|<priority>:<bucket>  zset: K's ready jobs of one priority: slot -> run_at
-- <base>kl:<K>  zset: K's running jobs -> lock expiry (ms); the runs whose lock is live count
--               against max_concurrency, so a lapsed lock (a dead worker) frees its slot
-- <base>ks:<K>  zset: K's starts in the rate window -> start time (ms); it expires with the
--               window
--
-- A limited job's record holds its key and limits (fields 17 to 20, see lib.lua), so every
-- script that places or ends it knows them. Only due jobs go to their key's buckets; a
-- scheduled one waits in the queue's scheduled buckets like any other.

local function limited(r) -- the job counts against a limit key
  return r[17] and (r[18] or r[19]) and true or false
end

local function limit_keys(key) -- ready index, bucket prefix, running locks, starts
  local base = BASE .. 'k'
  return base .. 'i:' .. key, base .. 'b:' .. key .. '|', base .. 'l:' .. key, base .. 's:' .. key
end

-- Whether key may start a run now under the limits of record r: true; false when
-- max_concurrency runs hold live locks (the outcome or lapse that frees a slot looks again);
-- else the time (ms) its rate window lets a start in.
local function key_state(key, r, now)
  local _, _, running, starts = limit_keys(key)
  if r[18] then
    redis.call('ZREMRANGEBYSCORE', running, '-inf', int(now)) -- lapsed locks count no more
    if redis.call('ZCARD', running) >= r[18] then return false end
  end
  if r[19] then
    redis.call('ZREMRANGEBYSCORE', starts, '-inf', int(now - r[20]))
    local count = redis.call('ZCARD', starts)
    if count >= r[19] then
      local oldest = redis.call('ZRANGE', starts, count - r[19], count - r[19], 'WITHSCORES')
      return tonumber(oldest[2]) + r[20]
    end
  end
  return true
end

-- Put key where it belongs now: in kidx with its best ready job's score (open), in ktimer
-- (its rate window opens later), or in neither (at max_concurrency, or no ready job). r is a
-- record holding the key's limits, or nil to read its best job's. Returns 1 when the key has
-- just opened (idle workers may be woken), else 0. A key with nothing left is forgotten.
local function key_review(key, now, r)
  local index, buckets, running, starts = limit_keys(key)
  local top = redis.call('ZRANGE', index, 0, 0, 'WITHSCORES')
  if not top[1] then
    redis.call('ZREM', Q.kidx, key)
    redis.call('ZREMRANGEBYSCORE', running, '-inf', int(now))
    local ttl = redis.call('PTTL', starts)
    if ttl > 0 then
      redis.call('ZADD', Q.ktimer, int(now + ttl), key) -- forget it once its starts expire
    elseif redis.call('EXISTS', running) == 0 then
      redis.call('SREM', Q.klist, key)
      redis.call('ZREM', Q.ktimer, key)
    end
    return 0
  end
  if not r then
    local head = bs_head(index, buckets)
    r = head and load_job(head)
    if not r then return redis.call('ZADD', Q.kidx, top[2], key) end -- a claim will see
  end
  local state = key_state(key, r, now)
  if state == true then
    redis.call('ZREM', Q.ktimer, key)
    return redis.call('ZADD', Q.kidx, top[2], key)
  end
  redis.call('ZREM', Q.kidx, key)
  if state then
    redis.call('ZADD', Q.ktimer, int(state), key)
  else
    redis.call('ZREM', Q.ktimer, key)
  end
  return 0
end

-- A due limited job into its key's ready buckets (the caller reviews the key).
local function key_place(n, r)
  local index, buckets = limit_keys(r[17])
  local run_at = math.max(0, math.min(r[5], READY_RUN_AT_MAX))
  bs_add(index, buckets, int(r[3]) .. ':', r[3] * PRIORITY_SHIFT, n, run_at)
  redis.call('SADD', Q.klist, r[17])
end

local function key_unplace(n, r) -- out of its key's ready buckets, if it was there
  local index, buckets = limit_keys(r[17])
  return bs_remove(index, buckets, int(r[3]) .. ':', r[3] * PRIORITY_SHIFT, n)
end

-- A run of a limited job ended or gave its lock back: its slot frees. Returns key_review's.
local function free_slot(n, r, now)
  local _, _, running = limit_keys(r[17])
  redis.call('ZREM', running, int(n))
  return key_review(r[17], now or now_ms(), r)
end

-- The best job of the open key, when its limits let it start now: out of the key's buckets.
-- Returns its number and record, or nil when it cannot start (then the key has left kidx, or
-- its head has changed, so a claim loop always moves on). An unreadable head is failed.
local function key_take(key, now)
  local index, buckets = limit_keys(key)
  local n = bs_head(index, buckets)
  if not n then
    key_review(key, now)
    return nil
  end
  local r, unreadable = load_job(n)
  if not r then -- no record (dropped), or bytes no script can read (kept in the failed set)
    bs_popmin(index, buckets)
    if unreadable then redis.call('ZADD', Q.failed, int(n), int(n)) end
    key_review(key, now)
    return nil
  end
  local state = key_state(key, r, now)
  if state ~= true then
    redis.call('ZREM', Q.kidx, key)
    if state then redis.call('ZADD', Q.ktimer, int(state), key) end
    return nil
  end
  bs_popmin(index, buckets)
  return n, r
end

-- A limited job was locked until expires: its run counts against the key, its start is
-- logged (member: unique per claim), and the key is reviewed for the next claim.
local function key_started(n, r, now, expires, member)
  local _, _, running, starts = limit_keys(r[17])
  redis.call('ZADD', running, int(expires), int(n))
  if r[19] then
    redis.call('ZADD', starts, int(now), member)
    redis.call('PEXPIRE', starts, int(r[20]))
  end
  key_review(r[17], now, r)
end

-- Keys whose ktimer came due: their rate window may let a start in, or they may be forgotten.
local TIMERS_MAX = 100
local function review_due_keys(now)
  local due = redis.call('ZRANGEBYSCORE', Q.ktimer, '-inf', int(now), 'LIMIT', 0, TIMERS_MAX)
  for _, key in ipairs(due) do
    redis.call('ZREM', Q.ktimer, key)
    key_review(key, now)
  end
end
