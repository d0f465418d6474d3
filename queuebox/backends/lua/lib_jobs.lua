-- lib_jobs.lua: where jobs go as they wait, run and end; prepended to every script after
-- lib.lua and lib_limits.lua (see lib.lua for the KEYS every script receives).

local function ready_group(priority)
  return int(priority) .. ':'
end

-- Put an unlocked, unfinished job where claim finds it: the scheduled buckets, the queue's
-- ready buckets, or its limit key's. Returns how many wake tokens it is worth: 1 when it can
-- be claimed now (a limited job: when its key has just opened), else 0.
local function place(n, r, now)
  if r[5] > now then
    bs_add(Q.sidx, Q.sbucket, '', 0, n, r[5])
    return 0
  end
  if limited(r) then
    key_place(n, r)
    return key_review(r[17], now, r)
  end
  local run_at = math.max(0, math.min(r[5], READY_RUN_AT_MAX))
  bs_add(Q.ridx, Q.rbucket, ready_group(r[3]), r[3] * PRIORITY_SHIFT, n, run_at)
  return 1
end

-- A run ended and its job waits again (reschedule, release): placed by its run_at, and a
-- limited job's slot freed first, so that its key is reviewed with the slot free. Returns
-- how many wake tokens that is worth.
local function wait_again(n, r, now)
  if not limited(r) then return place(n, r, now) end
  local _, _, running = limit_keys(r[17])
  redis.call('ZREM', running, int(n))
  local ready = place(n, r, now)
  if r[5] > now then ready = key_review(r[17], now, r) end -- other jobs of its key may start
  return ready
end

local function unlist(n) -- out of the sets of running, ended and cancelling jobs
  local member = int(n)
  redis.call('ZREM', Q.running, member)
  redis.call('ZREM', Q.failed, member)
  redis.call('ZREM', Q.done, member)
  redis.call('ZREM', Q.cancelled, member)
  redis.call('SREM', Q.cancelling, member)
end

-- Take a job out of every set (a limited one frees its slot); its record stays. Returns
-- free_slot's answer (1: its key has just opened) for a limited job, else 0.
local function unplace(n, r, now)
  bs_remove(Q.sidx, Q.sbucket, '', 0, n)
  unlist(n)
  if limited(r) then
    key_unplace(n, r)
    return free_slot(n, r, now)
  end
  bs_remove(Q.ridx, Q.rbucket, ready_group(r[3]), r[3] * PRIORITY_SHIFT, n)
  return 0
end

-- The job is cancelled for good, whatever held it: out of every set, unlocked, its unique key
-- freed, cancelled_at kept (or now), error recorded when given; kept in the cancelled set.
-- Returns unplace's answer.
local function cancel_now(n, r, now, error_text)
  local opened = unplace(n, r, now)
  free_unique(n, r)
  unlock(r)
  r[16] = r[16] or now
  r[6] = now
  if error_text then r[12] = error_text end
  save_job(n, r)
  redis.call('ZADD', Q.cancelled, int(n), int(n))
  return opened
end

local PROMOTE_MAX = 1000 -- bound the work of one call; the rest moves on the next call
local RECLAIM_MAX = 100

local function promote_and_reclaim(now)
  local expired = redis.call('ZRANGEBYSCORE', Q.running, '-inf', int(now), 'LIMIT', 0, RECLAIM_MAX)
  for _, member in ipairs(expired) do
    redis.call('ZREM', Q.running, member)
    local n = tonumber(member)
    local r, unreadable = load_job(n)
    if unreadable then
      redis.call('ZADD', Q.failed, member, member)
    elseif r and r[8] and r[16] then
      cancel_now(n, r, now) -- its worker died after a cancel was asked: never run it again
    elseif r and r[8] then
      r[12] = {r[9], r[10]} -- rendered as a WorkerLost note by the client
      unlock(r)
      r[6] = now
      save_job(n, r)
      if limited(r) then
        local _, _, running = limit_keys(r[17])
        redis.call('ZREM', running, member) -- (a lapsed lock counted no more already)
      end
      place(n, r, now)
    end
  end
  for _ = 1, PROMOTE_MAX do
    local n = bs_popmin(Q.sidx, Q.sbucket, now)
    if not n then break end
    local r, unreadable = load_job(n)
    if r then
      place(n, r, now)
    elseif unreadable then
      redis.call('ZADD', Q.failed, int(n), int(n))
    end
  end
  review_due_keys(now)
end

-- New jobs are stored in batches: numbers come from the queue's counter (KEYS[1] seq), and the
-- records and bucket entries are written by flush_batch with one command per bucket or per
-- 500 values rather than several per job. Due limited jobs go to their key's buckets at once;
-- each key is reviewed once per batch.
-- new_batch also reads, in the same command, whether the queue is registered (meta 'reg')
-- and whether it is paused (for wake: the enqueue's hot path).
local function new_batch()
  local meta = redis.call('HMGET', Q.meta, 'seq', 'reg', 'paused')
  local seq = tonumber(meta[1] or '0')
  return {seq = seq, start = seq, ready = 0, records = {}, pending = {}, buckets = {}, order = {},
          keys = {}, key_order = {}, registered = meta[2] and 1 or 0, paused = meta[3] ~= false}
end

local function batch_place(batch, n, priority, run_at, now)
  local idx, bprefix, member, offset, score
  if run_at <= now then
    batch.ready = batch.ready + 1
    idx, bprefix, offset = Q.ridx, Q.rbucket, priority * PRIORITY_SHIFT
    member = ready_group(priority) .. enc(math.floor(n / BUCKET))
    score = math.max(0, math.min(run_at, READY_RUN_AT_MAX))
  else
    idx, bprefix, offset = Q.sidx, Q.sbucket, 0
    member = enc(math.floor(n / BUCKET))
    score = run_at
  end
  local key = bprefix .. member
  local bucket = batch.buckets[key]
  if not bucket then
    bucket = {idx = idx, member = member, offset = offset, best = score, entries = {},
              number = math.floor(n / BUCKET)}
    batch.buckets[key] = bucket
    batch.order[#batch.order + 1] = key
  end
  if score < bucket.best then bucket.best = score end
  local entries = bucket.entries
  entries[#entries + 1] = int(score)
  entries[#entries + 1] = slot(n)
end

local function flush_batch(batch, now)
  if batch.seq == batch.start then return end
  redis.call('HSET', Q.meta, 'seq', int(batch.seq))
  call_chunked('HSET', Q.jobs, batch.records, 500)
  for _, key in ipairs(batch.order) do
    local bucket = batch.buckets[key]
    call_chunked('ZADD', key, bucket.entries, 500)
    redis.call('ZADD', bucket.idx, 'LT', int(bucket.offset + bucket.best), bucket.member)
    local num, listed = numbered(bucket.idx, key)
    redis.call('ZADD', num, int(bucket.number), listed)
  end
  for _, key in ipairs(batch.key_order) do
    batch.ready = batch.ready + key_review(key, now, batch.keys[key])
  end
end

-- A new job's run_at from its when: its delay in ms, or '@' then its run_at in ms.
local function run_at_of(now, when)
  if type(when) == 'string' then return tonumber(string.sub(when, 2)) end
  return now + when
end

local JOB_VALUES = 6 -- values the client packs per new job (see insert)

-- The error a script returns, before it writes anything, when a job of its jobs (packed
-- JOB_VALUES values each, when the fourth) would run after RUN_AT_LATEST; nil when none would.
local function too_late(now, jobs)
  for i = 4, #jobs, JOB_VALUES do
    if run_at_of(now, jobs[i]) > RUN_AT_LATEST then
      return redis.error_reply('queuebox: run_at out of range: job '
        .. ((i + JOB_VALUES - 4) / JOB_VALUES)
        .. ' would run after 9999-12-31T23:59:59Z; nothing was stored')
    end
  end
  return nil
end

-- Add one new job to batch, from the six values the client packs for it (see
-- redis_calls.pack_jobs): name, handler, priority, when (its delay in ms, or '@' then its
-- run_at in ms), unique (its unique key, or false) and limits (false, or {limit key,
-- max_concurrency or false, rate count or false, rate window in ms or false}). Not stored
-- when a waiting or running job of the queue (or an earlier one of the batch) holds the
-- unique key. Returns the job number, its run_at, and the holder's packed record ('' when
-- stored).
local function insert(batch, now, name, handler, priority, when, unique, limits)
  local key = unique or false
  if key then
    local holder = redis.call('HGET', Q.unique, key)
    local raw = holder and (batch.pending[holder] or redis.call('HGET', Q.jobs, holder))
    if raw then
      local ok, r = pcall(decode_job, raw)
      if ok and r[15] == key and not r[13] and not r[14] and not (r[16] and not r[8]) then
        return tonumber(holder), r[5], raw
      end
    end
  end
  batch.seq = batch.seq + 1
  local n = batch.seq
  local run_at = run_at_of(now, when)
  -- the record as pack_job would pack it, built here at once: this is the enqueue's hot path
  local raw, r
  if limits then
    r = {name, handler, priority, now, run_at, now, 0, false, false, false, false, false,
         false, false, key, false, limits[1], limits[2] or false, limits[3] or false,
         limits[4] or false}
    raw = pack_job(r)
  elseif key then
    raw = cmsgpack.pack({name, handler, priority, now, run_at - now, 0, 0,
                         false, false, false, false, false, false, false, key})
  else
    raw = cmsgpack.pack({name, handler, priority, now, run_at - now, 0, 0})
  end
  local records = batch.records
  records[#records + 1] = int(n)
  records[#records + 1] = raw
  batch.pending[int(n)] = raw
  if r and run_at <= now and limited(r) then
    key_place(n, r)
    if not batch.keys[r[17]] then
      batch.keys[r[17]] = r
      batch.key_order[#batch.key_order + 1] = r[17]
    end
  else
    batch_place(batch, n, priority, run_at, now)
  end
  if key then redis.call('HSET', Q.unique, key, int(n)) end
  return n, run_at, ''
end
