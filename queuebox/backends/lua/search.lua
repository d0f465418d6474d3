-- search: one queue's jobs newest first (highest job number first), filtered, for browsing
-- (JobSearch). Read-only.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV[1] look only at job numbers below this one ('0': from the newest), ARGV[2] state
-- wanted ('' for any), ARGV[3] job name wanted ('' for any), ARGV[4] text wanted, ARGV[5]
-- how to look for it: '0' no text filter, '1' ARGV[4] is ASCII lower case (as casefold
-- gives it), '2' ARGV[4] is not ASCII, ARGV[6] how many matches at most, ARGV[7] how many
-- records to look at at most.
-- The jobs come from the indexes that hold them, by number: the waiting buckets listed by
-- number (snum, rnum), the running set, and the failed, done and cancelled sets (scored by
-- number); only those a state can be found in are read, so a page costs what it returns plus
-- the jobs it passes over, never a walk through the job numbers. The state is derived from
-- each record and Redis's clock as the client derives it. The text filter here only narrows:
-- a record is returned when the text is in its handler or last error (ASCII letters compared
-- without case), or when either holds a byte that is not ASCII or the error is a reclaim note
-- (the client's casefold comparison decides those).
-- Returns {now, 1 when every job below ARGV[1] was looked at else 0, the lowest job number
-- looked at ('0' when none), the created_at of the lowest readable job looked at ('0' when
-- none), how many jobs were looked at, then per match: job number, its packed record}.
local now = now_ms()
local bound = tonumber(ARGV[1])
if bound == 0 then bound = tonumber(redis.call('HGET', Q.meta, 'seq') or '0') + 1 end
local state, name, needle, mode = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local limit, budget = tonumber(ARGV[6]), tonumber(ARGV[7])
local CHUNK = 64

-- A stream gives job numbers below bound, highest first: fill(stream) refills stream.buf
-- (highest first) or sets stream.done.
local streams = {}
local function stream(fill)
  streams[#streams + 1] = {buf = {}, at = 1, below = bound, done = false, fill = fill}
end

local function by_number(set) -- failed, done, cancelled: scored by job number
  stream(function(s)
    local got = redis.call('ZREVRANGEBYSCORE', set, '(' .. int(s.below), '-inf', 'LIMIT', 0, CHUNK)
    for i, member in ipairs(got) do s.buf[i] = tonumber(member) end
    if got[1] then s.below = s.buf[#s.buf] else s.done = true end
  end)
end

local function running_jobs() -- the running set is small: read once
  stream(function(s)
    if s.below <= 0 then -- read already
      s.done = true
      return
    end
    for _, member in ipairs(redis.call('ZRANGE', Q.running, 0, -1)) do
      local n = tonumber(member)
      if n < bound then s.buf[#s.buf + 1] = n end
    end
    table.sort(s.buf, function(a, b) return a > b end)
    s.done = not s.buf[1]
    s.below = 0
  end)
end

-- The waiting buckets a numbered set lists, bucket by bucket from the highest number;
-- later: keep only the entries whose run_at is still to come (scheduled ones).
local function buckets(num, later)
  stream(function(s)
    if s.below <= 0 then
      s.done = true
      return
    end
    local top = redis.call('ZREVRANGEBYSCORE', num, int(math.floor((s.below - 1) / BUCKET)),
                           '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if not top[1] then
      s.done = true
      return
    end
    local b = tonumber(top[2])
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', num, int(b), int(b))) do
      local entries = redis.call('ZRANGE', BASE .. member, 0, -1, 'WITHSCORES')
      for i = 1, #entries, 2 do
        local n = b * BUCKET + tonumber(entries[i])
        if n < s.below and (not later or tonumber(entries[i + 1]) > now) then
          s.buf[#s.buf + 1] = n
        end
      end
    end
    table.sort(s.buf, function(x, y) return x > y end)
    s.below = b * BUCKET
  end)
end

-- Scheduled jobs whose run_at has passed (ready, not yet moved by a claim): the scheduled
-- buckets whose best entry is due, read once (a claim moves them, so they are few).
local function due_scheduled()
  stream(function(s)
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', Q.sidx, '-inf', int(now))) do
      local entries = redis.call('ZRANGEBYSCORE', Q.sbucket .. member, '-inf', int(now))
      for _, entry in ipairs(entries) do
        local n = bucket_number(member) * BUCKET + tonumber(entry)
        if n < bound then s.buf[#s.buf + 1] = n end
      end
    end
    table.sort(s.buf, function(x, y) return x > y end)
    s.done = true
  end)
end

if state == '' or state == 'ready' then buckets(Q.rnum) end
if state == '' then buckets(Q.snum) end
if state == 'ready' then due_scheduled() end
if state == 'scheduled' then buckets(Q.snum, true) end
if state == '' or state == 'running' or state == 'cancelled' then running_jobs() end
if state == '' or state == 'failed' then by_number(Q.failed) end
if state == '' or state == 'completed' then by_number(Q.done) end
if state == '' or state == 'cancelled' then by_number(Q.cancelled) end

local function head(s) -- the stream's next number, refilling it when it ran dry
  while s.at > #s.buf do
    if s.done then return nil end
    s.buf, s.at = {}, 1
    s.fill(s)
  end
  return s.buf[s.at]
end

local function state_of(r) -- as redis_codec.record_from_fields derives it
  if r[14] then return 'completed' end
  if r[13] then return 'failed' end
  if r[16] and (not r[8] or (tonumber(r[10]) or 0) <= now) then return 'cancelled' end
  if r[8] then return 'running' end
  if r[5] <= now then return 'ready' end
  return 'scheduled'
end

local function may_hold(text) -- whether the text filter may match this value
  if type(text) ~= 'string' then return type(text) == 'table' end -- a reclaim note
  if string.find(text, '[\128-\255]') then return true end
  return mode == '1' and string.find(string.lower(text), needle, 1, true) ~= nil
end

-- Whether the job of packed record raw matches; also its created_at (nil when unreadable).
local function wanted(raw)
  local ok, r = pcall(decode_job, raw)
  if not ok then -- not a record: shown as a failed unreadable job; the client filters it
    return state == '' or state == 'failed', nil
  end
  if (state ~= '' and state_of(r) ~= state) or (name ~= '' and r[1] ~= name) then
    return false, r[4]
  end
  return mode == '0' or may_hold(r[2]) or may_hold(r[12]), r[4]
end

local out = {int(now), 0, '0', '0', 0}
local looked, found, last = 0, 0, nil
while found < limit and looked < budget do
  local best, from = nil, nil
  for _, s in ipairs(streams) do
    local n = head(s)
    if n and (best == nil or n > best) then best, from = n, s end
  end
  if not best then break end
  from.at = from.at + 1
  if best ~= last then -- (a job listed twice, in a damaged store, is looked at once)
    last = best
    looked = looked + 1
    out[3] = int(best)
    local raw = redis.call('HGET', Q.jobs, int(best))
    if raw then
      local match, created = wanted(raw)
      if created then out[4] = int(created) end
      if match then
        out[#out + 1] = int(best)
        out[#out + 1] = raw
        found = found + 1
      end
    end
  end
end
local more = false
for _, s in ipairs(streams) do
  if head(s) then more = true end
end
out[2] = more and 0 or 1
out[5] = looked
return out
