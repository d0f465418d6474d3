-- upgrade: bring one queue's keys written by an earlier version to the current layout
-- (migrate() runs it on every registered queue; it is idempotent).
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV: none.
-- The failed, done and cancelled sets were scored by time; they are scored by job number now,
-- so that jobs are browsed newest first (search.lua). The buckets of waiting jobs are listed
-- by number in snum and rnum. Returns how many entries were rewritten.
local changed = 0
for _, set in ipairs({Q.failed, Q.done, Q.cancelled}) do
  local entries = redis.call('ZRANGE', set, 0, -1, 'WITHSCORES')
  local fixed = {}
  for i = 1, #entries, 2 do
    if entries[i] ~= entries[i + 1] then
      fixed[#fixed + 1], fixed[#fixed + 2] = entries[i], entries[i]
    end
  end
  call_chunked('ZADD', set, fixed, 500)
  changed = changed + #fixed / 2
end
local sets = {{Q.sidx, Q.sbucket}, {Q.ridx, Q.rbucket}}
for _, key in ipairs(redis.call('SMEMBERS', Q.klist)) do
  local index, buckets = limit_keys(key)
  sets[#sets + 1] = {index, buckets}
end
for _, pair in ipairs(sets) do
  local listed = {}
  local num
  for _, member in ipairs(redis.call('ZRANGE', pair[1], 0, -1)) do
    local entry
    num, entry = numbered(pair[1], pair[2] .. member)
    if not redis.call('ZSCORE', num, entry) then
      listed[#listed + 1], listed[#listed + 2] = int(bucket_number(member)), entry
    end
  end
  if num then call_chunked('ZADD', num, listed, 500) end
  changed = changed + #listed / 2
end
return changed
