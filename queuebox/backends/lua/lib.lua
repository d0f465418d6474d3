-- lib.lua: helpers that queuebox prepends to every script in this folder before loading it
-- (Redis has no `require`), followed by lib_limits.lua and lib_jobs.lua. None of them is a
-- script by itself or reads KEYS or ARGV of its own, except that every script receives the
-- same eleven keys of one queue, all in one hash slot:
--
-- KEYS[1] <prefix>:{<queue>}:meta     hash: seq (last job number), reg (queue is in the registry),
--                                     paused (set while the queue is paused)
-- KEYS[2] <prefix>:{<queue>}:jobs     hash: job number -> packed record (msgpack, see below)
-- KEYS[3] <prefix>:{<queue>}:sidx     zset: scheduled bucket -> earliest run_at in the bucket
-- KEYS[4] <prefix>:{<queue>}:ridx     zset: ready bucket -> priority * 2^42 + earliest run_at
-- KEYS[5] <prefix>:{<queue>}:running  zset: job number -> lock expiry (ms)
-- KEYS[6] <prefix>:{<queue>}:failed   zset: job number -> job number (newest first by score)
-- KEYS[7] <prefix>:{<queue>}:done     zset: job number -> job number
-- KEYS[8] <prefix>:{<queue>}:unique   hash: unique key -> number of the waiting or running job
--                                     that holds it (freed when the job ends)
-- KEYS[9] <prefix>:{<queue>}:ticks    hash: recurring job key -> last tick recorded (ms)
-- KEYS[10] <prefix>:{<queue>}:cancelled  zset: job number -> job number, jobs cancelled for
--                                        good (kept, never claimed)
-- KEYS[11] <prefix>:{<queue>}:cancelling set: numbers of running jobs whose cancel was asked,
--                                        for their workers to find (cancel_requested)
--
-- Waiting jobs live in small "bucket" sorted sets (64 job numbers each, so Redis keeps them as
-- compact listpacks), named <prefix>:{<queue>}:s:<bucket> (scheduled, score run_at) and
-- <prefix>:{<queue>}:r:<priority>:<bucket> (ready, score run_at); the two index sets above
-- order the buckets by their best entry. Two more sets list the buckets by bucket number, for
-- browsing jobs newest first (search.lua): <prefix>:{<queue>}:snum (scheduled buckets) and
-- <prefix>:{<queue>}:rnum (ready buckets, those of limit keys too); member: the bucket's key
-- without the queue's base, score: the bucket number. Bucket keys share the queue's hash tag.
-- The ready jobs of a limit key have buckets of their own (lib_limits.lua).
--
-- <prefix>:{<queue>}:wake is the queue's wake list: a worker that waits on this queue alone
-- blocks on it (BLPOP) with its claim pipelined behind, so the claim runs the moment a token
-- arrives. Scripts that make jobs ready push up to WAKE_MAX tokens; a claim that leaves no
-- ready job deletes the list, so stale tokens do not pile up. A paused queue gets none.
--
-- A record is a msgpack array packed with Redis's built-in cmsgpack: 1 name, 2 handler,
-- 3 priority, 4 created_at, 5 run_at - created_at, 6 updated_at - created_at, 7 attempts,
-- 8 locked_at, 9 locked_by, 10 lock_expires_at, 11 lock_token, 12 last_error (text, or
-- {previous owner, expiry} after a reclaim), 13 failed_at, 14 completed_at, 15 unique_key
-- (only while the job waits or runs: cleared when it ends, so kept failed and completed
-- records hold none), 16 cancelled_at, 17 limit_key, 18 max_concurrency, 19 rate limit count,
-- 20 rate limit window (ms) (17 to 20 only for jobs with a flow-control limit, kept for the
-- job's life). Times are integer milliseconds from TIME. An absent value is false (a Lua
-- table with nil in it would pack as a map); records written by earlier versions hold nil
-- there, which reads the same. Trailing absent values are left out, so a waiting job without
-- a unique key or a limit packs 7 values.

local BUCKET = 64
local PRIORITY_SHIFT = 4398046511104 -- 2^42: ready scores are priority * 2^42 + run_at
local READY_RUN_AT_MAX = PRIORITY_SHIFT - 1 -- the largest run_at a ready score can hold
local FIELDS = 20
local KEPT_FIELDS = 7
-- 9999-12-31T23:59:59Z in ms, the latest time any store can hold (records.LATEST_RUN_AT): no
-- script stores a later run_at, or a client could not read the record
local RUN_AT_LATEST = 253402300799000
-- table.unpack (Lua 5.4 in some test servers) or unpack (Lua 5.1 in Redis), set by bind: a
-- library loaded as Redis Functions may not read the globals while it loads
local tunpack

-- The queue a call works on: BASE, its keys' common prefix ("meta" removed), and Q, its keys
-- (bind(KEYS) opens every call; as a Redis Function, the library's own values persist from
-- call to call, so Q is rebuilt only when the queue changes).
local BASE, Q

local function bind(keys)
  tunpack = tunpack or table.unpack or unpack
  if Q and Q.meta == keys[1] then return end
  BASE = string.sub(keys[1], 1, -5)
  Q = {
    meta = keys[1], jobs = keys[2], sidx = keys[3], ridx = keys[4],
    running = keys[5], failed = keys[6], done = keys[7], unique = keys[8], ticks = keys[9],
    cancelled = keys[10], cancelling = keys[11],
    sbucket = BASE .. 's:', rbucket = BASE .. 'r:', wake = BASE .. 'wake',
    snum = BASE .. 'snum', rnum = BASE .. 'rnum',
    kidx = BASE .. 'kidx', ktimer = BASE .. 'ktimer', klist = BASE .. 'klist',
    name = string.match(keys[1], '{([^}]*)}:meta$'), -- the queue's name (names hold no braces)
  }
end

local WAKE_MAX = 16

local function int(x)
  return string.format('%d', x)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function paused()
  return redis.call('HEXISTS', Q.meta, 'paused') == 1
end

-- Tell idle workers that the queue may have work: on the pub/sub channel (workers waiting on
-- several queues re-check when the next job is due), and with one token per job that is ready
-- now (ready, at most WAKE_MAX) on the queue's wake list. Nothing for a paused queue: its
-- workers could claim nothing (resume wakes them). is_paused, when the caller read the flag
-- already (new_batch does), saves reading it again.
local function wake(channel, queue, ready, is_paused)
  if is_paused == nil then is_paused = paused() end
  if is_paused then return end
  redis.call('PUBLISH', channel, queue)
  if ready < 1 then return end
  local tokens = {}
  for i = 1, math.min(ready, WAKE_MAX) do tokens[i] = '1' end
  if redis.call('RPUSH', Q.wake, tunpack(tokens)) > WAKE_MAX then
    redis.call('LTRIM', Q.wake, -WAKE_MAX, -1)
  end
end

-- wake only when count jobs became claimable (a key opened by an outcome): no pub/sub message
-- for outcomes that change nothing for idle workers
local function wake_if(channel, queue, count)
  if count > 0 then wake(channel, queue, count) end
end

-- records ----------------------------------------------------------------------------------

-- The values scripts compute with (priority, created_at, the two deltas, attempts) must be
-- numbers (Lua takes text that reads as one too), or the record is not one a script can
-- change: it raises, and the script treats the job as unreadable. Returns t. The client is
-- stricter; what it cannot read it reports as an unreadable record, locked by a claim.
local function numeric(t)
  if type(t) ~= 'table' or not tonumber(t[3]) or not tonumber(t[4]) or not tonumber(t[5])
      or not tonumber(t[6]) or not tonumber(t[7]) then
    error('queuebox: not a job record')
  end
  return t
end

-- The record of packed bytes, its run_at and updated_at made absolute. Raises for bytes that
-- are not a record (see load_job).
local function decode_job(raw)
  local r = numeric(cmsgpack.unpack(raw))
  for i = 1, FIELDS do
    if r[i] == nil then r[i] = false end
  end
  r[5] = r[5] + r[4]
  r[6] = r[6] + r[4]
  return r
end

-- nil when there is no such job; nil, true when its bytes are not a record lib.lua wrote
-- (hand-edited, corrupted): every script then treats it as absent, and the claim path parks
-- it in the failed set, where get() shows it as an unreadable failed job and delete removes it.
local function load_job(n)
  local raw = redis.call('HGET', Q.jobs, int(n))
  if not raw then return nil end
  local ok, r = pcall(decode_job, raw)
  if ok then return r end
  return nil, true
end

local function pack_job(r)
  local t = {}
  for i = 1, FIELDS do t[i] = r[i] end
  t[5] = r[5] - r[4]
  t[6] = r[6] - r[4]
  local last = FIELDS
  while last > KEPT_FIELDS and t[last] == false do
    t[last] = nil
    last = last - 1
  end
  return cmsgpack.pack(t)
end

local function save_job(n, r) -- returns the packed record
  local raw = pack_job(r)
  redis.call('HSET', Q.jobs, int(n), raw)
  return raw
end

-- t, an unpacked record whose lock fields (8 to 11) are set, packed again: the values after
-- them absent as false, none trailing (a record of an earlier version may hold nil there).
local function pack_locked(t)
  for i = 12, FIELDS do
    if t[i] == nil then t[i] = false end
  end
  for i = FIELDS, 12, -1 do
    if t[i] ~= false then break end
    t[i] = nil
  end
  return cmsgpack.pack(t)
end

-- The packed record of a claimed job: updated_at = now, one more attempt, locked by worker
-- until expires with token. Raises for bytes that are not a record. The claim's hot path:
-- it changes the unpacked values in place rather than through decode_job and pack_job.
local function lock_record(raw, now, worker, expires, token)
  local t = numeric(cmsgpack.unpack(raw))
  t[6], t[7] = now - t[4], t[7] + 1
  t[8], t[9], t[10], t[11] = now, worker, expires, token
  return pack_locked(t)
end

-- redis.call(command, key, the values of list) in chunks of at most per values (even, so that
-- pairs stay together): Lua's unpack has a stack limit.
local function call_chunked(command, key, list, per)
  for i = 1, #list, per do
    redis.call(command, key, tunpack(list, i, math.min(i + per - 1, #list)))
  end
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

-- The set that lists a bucket by its number (snum or rnum), and the bucket's member there.
local function numbered(idx, bkey)
  return idx == Q.sidx and Q.snum or Q.rnum, string.sub(bkey, #BASE + 1)
end

local function bs_drop(idx, bkey, member) -- an empty bucket leaves both its index sets
  redis.call('ZREM', idx, member)
  local num, listed = numbered(idx, bkey)
  redis.call('ZREM', num, listed)
end

local function bs_fix(idx, bkey, member, offset)
  local head = redis.call('ZRANGE', bkey, 0, 0, 'WITHSCORES')
  if head[1] then
    redis.call('ZADD', idx, int(offset + tonumber(head[2])), member)
  else
    bs_drop(idx, bkey, member)
  end
end

local function bs_add(idx, bprefix, group, offset, n, score)
  local b = math.floor(n / BUCKET)
  local member = group .. enc(b)
  local bkey = bprefix .. member
  redis.call('ZADD', bkey, int(score), slot(n))
  redis.call('ZADD', idx, 'LT', int(offset + score), member)
  local num, listed = numbered(idx, bkey)
  redis.call('ZADD', num, int(b), listed)
end

local function bs_remove(idx, bprefix, group, offset, n)
  local member = group .. enc(math.floor(n / BUCKET))
  if redis.call('ZREM', bprefix .. member, slot(n)) == 0 then return false end
  bs_fix(idx, bprefix .. member, member, offset)
  return true
end

-- The best entry's job number, without popping it (nil: none).
local function bs_head(idx, bprefix)
  while true do
    local top = redis.call('ZRANGE', idx, 0, 0)
    if not top[1] then return nil end
    local first = redis.call('ZRANGE', bprefix .. top[1], 0, 0)
    if first[1] then return bucket_number(top[1]) * BUCKET + tonumber(first[1]) end
    bs_drop(idx, bprefix .. top[1], top[1]) -- an empty bucket left in the index: drop it
  end
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
    bs_drop(idx, bprefix .. member, member) -- an empty bucket left in the index: drop it
  end
end

-- Pop up to count ready job numbers, best first (what count calls of bs_popmin would give):
-- from the best bucket, every entry that comes before the next bucket's best, then again.
-- With a bound (an index score), only entries whose score is at most bound.
local function bs_popmany(idx, bprefix, count, bound)
  local found = {}
  while #found < count do
    local top = redis.call('ZRANGE', idx, 0, 1, 'WITHSCORES')
    if not top[1] or (bound and tonumber(top[2]) > bound) then break end
    local member = top[1]
    local bkey = bprefix .. member
    local offset = tonumber(string.match(member, '^(-?%d+):')) * PRIORITY_SHIFT
    local want = count - #found
    local entries
    local upto, open = nil, false -- the highest entry score to take, and whether it is excluded
    if top[3] then
      -- An entry that ties with the next bucket's best comes first only from the lower bucket
      -- (a tie is within one priority, and the job number breaks it).
      upto = tonumber(top[4]) - offset
      open = bucket_number(member) > bucket_number(top[3])
    end
    if bound and (not upto or bound - offset < upto) then upto, open = bound - offset, false end
    if upto then
      local limit = open and ('(' .. int(upto)) or int(upto)
      entries = redis.call('ZRANGEBYSCORE', bkey, '-inf', limit, 'LIMIT', 0, want)
      if not entries[1] then entries = redis.call('ZRANGE', bkey, 0, 0) end
    else
      entries = redis.call('ZRANGE', bkey, 0, want - 1)
    end
    if entries[1] then
      call_chunked('ZREM', bkey, entries, 500)
      bs_fix(idx, bkey, member, offset)
      local base = bucket_number(member) * BUCKET
      for _, entry in ipairs(entries) do found[#found + 1] = base + tonumber(entry) end
    else
      bs_drop(idx, bkey, member) -- an empty bucket left in the index: drop it
    end
  end
  return found
end
