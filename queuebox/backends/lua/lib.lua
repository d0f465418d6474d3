-- lib.lua: helpers that queuebox prepends to every script in this folder before loading it
-- (Redis has no `require`). It is not a script by itself and reads no KEYS or ARGV of its own,
-- except that every script receives the same nine keys of one queue, all in one hash slot:
--
-- KEYS[1] <prefix>:{<queue>}:meta     hash: seq (last job number), reg (queue is in the registry)
-- KEYS[2] <prefix>:{<queue>}:jobs     hash: job number -> packed record (msgpack, see below)
-- KEYS[3] <prefix>:{<queue>}:sidx     zset: scheduled bucket -> earliest run_at in the bucket
-- KEYS[4] <prefix>:{<queue>}:ridx     zset: ready bucket -> priority * 2^42 + earliest run_at
-- KEYS[5] <prefix>:{<queue>}:running  zset: job number -> lock expiry (ms)
-- KEYS[6] <prefix>:{<queue>}:failed   zset: job number -> failed_at (ms)
-- KEYS[7] <prefix>:{<queue>}:done     zset: job number -> completed_at (ms)
-- KEYS[8] <prefix>:{<queue>}:unique   hash: unique key -> number of the waiting or running job
--                                     that holds it (freed when the job ends)
-- KEYS[9] <prefix>:{<queue>}:ticks    hash: recurring job key -> last tick recorded (ms)
--
-- Waiting jobs live in small "bucket" sorted sets (64 job numbers each, so Redis keeps them as
-- compact listpacks), named <prefix>:{<queue>}:s:<bucket> (scheduled, score run_at) and
-- <prefix>:{<queue>}:r:<priority>:<bucket> (ready, score run_at); the two index sets above
-- order the buckets by their best entry. Bucket keys share the queue's hash tag.
--
-- A record is a msgpack array: 1 name, 2 handler, 3 priority, 4 created_at, 5 run_at - created_at,
-- 6 updated_at - created_at, 7 attempts, 8 locked_at, 9 locked_by, 10 lock_expires_at,
-- 11 lock_token, 12 last_error (text, or {previous owner, expiry} after a reclaim),
-- 13 failed_at, 14 completed_at, 15 unique_key (only while the job waits or runs: cleared
-- when it ends, so kept failed and completed records hold none). Times are integer
-- milliseconds from TIME; absent is nil, and trailing nils are left out (records written
-- before field 15 existed simply end earlier). The small msgpack codec below covers exactly
-- these values, so the scripts need no cmsgpack module.

local BUCKET = 64
local PRIORITY_SHIFT = 4398046511104 -- 2^42: ready scores are priority * 2^42 + run_at
local RUN_AT_MAX = PRIORITY_SHIFT - 1
local FIELDS = 15
local KEPT_FIELDS = 7
local tunpack = table.unpack or unpack -- Lua 5.1 in Redis, 5.4 in some test servers

local BASE = string.sub(KEYS[1], 1, -5) -- the key prefix of this queue, "meta" removed
local Q = {
  meta = KEYS[1], jobs = KEYS[2], sidx = KEYS[3], ridx = KEYS[4],
  running = KEYS[5], failed = KEYS[6], done = KEYS[7], unique = KEYS[8], ticks = KEYS[9],
  sbucket = BASE .. 's:', rbucket = BASE .. 'r:',
}

local function int(x)
  return string.format('%d', x)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- msgpack ----------------------------------------------------------------------------------

local function be(v, nbytes) -- big-endian bytes of an integer 0 <= v < 2^53
  local out = {}
  for i = nbytes, 1, -1 do
    out[i] = string.char(v % 256)
    v = math.floor(v / 256)
  end
  return table.concat(out)
end

local function pack_int(v)
  if v >= 0 then
    if v < 128 then return string.char(v) end
    if v < 256 then return '\204' .. be(v, 1) end
    if v < 65536 then return '\205' .. be(v, 2) end
    if v < 4294967296 then return '\206' .. be(v, 4) end
    return '\207' .. be(v, 8)
  end
  if v >= -32 then return string.char(256 + v) end
  if v >= -2147483648 then return '\210' .. be(v + 4294967296, 4) end
  local hi = math.floor(v / 4294967296)
  return '\211' .. be(hi + 4294967296, 4) .. be(v - hi * 4294967296, 4)
end

local function pack(v)
  local kind = type(v)
  if kind == 'number' then return pack_int(v) end
  if kind == 'string' then
    local n = #v
    if n < 32 then return string.char(160 + n) .. v end
    if n < 256 then return '\217' .. be(n, 1) .. v end
    if n < 65536 then return '\218' .. be(n, 2) .. v end
    return '\219' .. be(n, 4) .. v
  end
  if kind == 'table' then
    local n = #v
    local out = {n < 16 and string.char(144 + n) or ('\220' .. be(n, 2))}
    for i = 1, n do out[i + 1] = pack(v[i]) end
    return table.concat(out)
  end
  if v == true then return '\195' end
  return '\192'
end

local function rd(s, pos, nbytes)
  local v = 0
  for i = pos, pos + nbytes - 1 do v = v * 256 + string.byte(s, i) end
  return v
end

local unpack_at
local function unpack_array(s, pos, n)
  local out = {}
  for i = 1, n do out[i], pos = unpack_at(s, pos) end
  return out, pos
end

unpack_at = function(s, pos) -- value (nil becomes false), next position
  local c = string.byte(s, pos)
  if c < 128 then return c, pos + 1 end
  if c >= 224 then return c - 256, pos + 1 end
  if c >= 160 and c < 192 then return string.sub(s, pos + 1, pos + c - 160), pos + 1 + c - 160 end
  if c >= 144 and c < 160 then return unpack_array(s, pos + 1, c - 144) end
  if c == 192 or c == 194 then return false, pos + 1 end
  if c == 195 then return true, pos + 1 end
  if c == 204 then return rd(s, pos + 1, 1), pos + 2 end
  if c == 205 then return rd(s, pos + 1, 2), pos + 3 end
  if c == 206 then return rd(s, pos + 1, 4), pos + 5 end
  if c == 207 then return rd(s, pos + 1, 8), pos + 9 end
  if c == 210 then
    local v = rd(s, pos + 1, 4)
    if v >= 2147483648 then v = v - 4294967296 end
    return v, pos + 5
  end
  if c == 211 then
    local hi = rd(s, pos + 1, 4)
    if hi >= 2147483648 then hi = hi - 4294967296 end
    return hi * 4294967296 + rd(s, pos + 5, 4), pos + 9
  end
  local width = ({[217] = 1, [218] = 2, [219] = 4})[c]
  if width then
    local n = rd(s, pos + 1, width)
    local from = pos + 1 + width
    return string.sub(s, from, from + n - 1), from + n
  end
  if c == 220 then return unpack_array(s, pos + 3, rd(s, pos + 1, 2)) end
  error('queuebox: unexpected msgpack byte ' .. c)
end

-- records ----------------------------------------------------------------------------------

local function decode_job(raw)
  local r = unpack_at(raw, 1)
  for i = 1, FIELDS do
    if r[i] == nil then r[i] = false end
  end
  r[5] = r[5] + r[4]
  r[6] = r[6] + r[4]
  return r
end

local function load_job(n)
  local raw = redis.call('HGET', Q.jobs, int(n))
  if not raw then return nil end
  return decode_job(raw)
end

local function save_job(n, r) -- returns the packed record
  local t = {}
  for i = 1, FIELDS do t[i] = r[i] end
  t[5] = r[5] - r[4]
  t[6] = r[6] - r[4]
  local last = FIELDS
  while last > KEPT_FIELDS and t[last] == false do
    t[last] = nil
    last = last - 1
  end
  local raw = pack(t)
  redis.call('HSET', Q.jobs, int(n), raw)
  return raw
end

local function owned(r, token)
  return r and r[11] and r[11] == token
end

local function unlock(r)
  r[8], r[9], r[10], r[11] = false, false, false, false
end

local function free_unique(n, r) -- the job ends: give its unique key back (the caller saves r)
  if r[15] then
    if redis.call('HGET', Q.unique, r[15]) == int(n) then redis.call('HDEL', Q.unique, r[15]) end
    r[15] = false
  end
end

-- bucketed sorted sets ---------------------------------------------------------------------

local function enc(b) -- length-prefixed decimal: sorts as text in numeric order
  local s = int(b)
  return string.char(96 + #s) .. s
end

local function slot(n)
  return string.format('%02d', n % BUCKET)
end

local function bucket_number(member)
  return tonumber(string.match(member, '(%d+)$'))
end

local function bs_fix(idx, bkey, member, offset)
  local head = redis.call('ZRANGE', bkey, 0, 0, 'WITHSCORES')
  if head[1] then
    redis.call('ZADD', idx, int(offset + tonumber(head[2])), member)
  else
    redis.call('ZREM', idx, member)
  end
end

local function bs_add(idx, bprefix, group, offset, n, score)
  local member = group .. enc(math.floor(n / BUCKET))
  redis.call('ZADD', bprefix .. member, int(score), slot(n))
  redis.call('ZADD', idx, 'LT', int(offset + score), member)
end

local function bs_remove(idx, bprefix, group, offset, n)
  local member = group .. enc(math.floor(n / BUCKET))
  if redis.call('ZREM', bprefix .. member, slot(n)) == 0 then return false end
  bs_fix(idx, bprefix .. member, member, offset)
  return true
end

-- Pop the best entry when its index score is <= limit (nil: any); returns job number, score.
local function bs_popmin(idx, bprefix, limit)
  while true do
    local top = redis.call('ZRANGE', idx, 0, 0, 'WITHSCORES')
    if not top[1] then return nil end
    local score = tonumber(top[2])
    if limit and score > limit then return nil end
    local member = top[1]
    local popped = redis.call('ZPOPMIN', bprefix .. member)
    if popped[1] then
      bs_fix(idx, bprefix .. member, member, score - tonumber(popped[2]))
      return bucket_number(member) * BUCKET + tonumber(popped[1]), score
    end
    redis.call('ZREM', idx, member) -- an empty bucket left in the index: drop it
  end
end

-- where waiting jobs live ------------------------------------------------------------------

local function ready_group(priority)
  return int(priority) .. ':'
end

local function place(n, r, now) -- put an unlocked, unfinished job where claim finds it
  if r[5] <= now then
    local run_at = math.max(0, math.min(r[5], RUN_AT_MAX))
    bs_add(Q.ridx, Q.rbucket, ready_group(r[3]), r[3] * PRIORITY_SHIFT, n, run_at)
  else
    bs_add(Q.sidx, Q.sbucket, '', 0, n, r[5])
  end
end

local function unplace(n, r) -- take a job out of every set; its record stays
  bs_remove(Q.sidx, Q.sbucket, '', 0, n)
  bs_remove(Q.ridx, Q.rbucket, ready_group(r[3]), r[3] * PRIORITY_SHIFT, n)
  redis.call('ZREM', Q.running, int(n))
  redis.call('ZREM', Q.failed, int(n))
  redis.call('ZREM', Q.done, int(n))
end

local PROMOTE_MAX = 1000 -- bound the work of one call; the rest moves on the next call
local RECLAIM_MAX = 100

local function promote_and_reclaim(now)
  local expired = redis.call('ZRANGEBYSCORE', Q.running, '-inf', int(now), 'LIMIT', 0, RECLAIM_MAX)
  for _, member in ipairs(expired) do
    redis.call('ZREM', Q.running, member)
    local n = tonumber(member)
    local r = load_job(n)
    if r and r[8] then
      r[12] = {r[9], r[10]} -- rendered as a WorkerLost note by the client
      unlock(r)
      r[6] = now
      save_job(n, r)
      place(n, r, now)
    end
  end
  for _ = 1, PROMOTE_MAX do
    local n = bs_popmin(Q.sidx, Q.sbucket, now)
    if not n then break end
    local r = load_job(n)
    if r then place(n, r, now) end
  end
end

-- Store one new job (the five enqueue values and its unique key: '' for none, else '=' then
-- the key), unless a waiting or running job of the queue holds that key. Returns the job
-- number, its run_at, and the holder's packed record ('' when the new job was stored).
local function insert(now, name, handler, priority, run_at_arg, delay, unique_arg)
  local key = false
  if unique_arg ~= '' then
    key = string.sub(unique_arg, 2)
    local holder = redis.call('HGET', Q.unique, key)
    local raw = holder and redis.call('HGET', Q.jobs, holder)
    if raw then
      local r = decode_job(raw)
      if r[15] == key and not r[13] and not r[14] then return tonumber(holder), r[5], raw end
    end
  end
  local n = redis.call('HINCRBY', Q.meta, 'seq', 1)
  local run_at = now + tonumber(delay)
  if run_at_arg ~= '' then run_at = tonumber(run_at_arg) end
  local r = {name, handler, tonumber(priority), now, run_at, now, 0,
             false, false, false, false, false, false, false, key}
  save_job(n, r)
  place(n, r, now)
  if key then redis.call('HSET', Q.unique, key, int(n)) end
  return n, run_at, ''
end
