-- extend_many: renew the locks a worker holds on jobs of one queue until now + lease (its
-- heartbeat), each only while the caller holds its lock token.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV[1] lease in ms, ARGV[2] the jobs as "number:token" separated by commas (as in
-- complete_many.lua).
-- Returns one character per job, in order: '1', or '0' (that job unchanged) when the token is
-- not the job's current lock token.
-- A limited job's run keeps counting against its key while its lock is renewed.
-- The record renewed until expires, packed, or nil when token is not its lock token; the
-- values are changed in place, as the claim does (lock_record), and its limit key when it
-- has a limit. Raises for bytes that are not a record.
local function renewed(raw, token, now, expires)
  local t = numeric(cmsgpack.unpack(raw))
  if not t[11] or t[11] ~= token then return nil end
  t[6], t[10] = now - t[4], expires
  local key = limited(t) and t[17] or nil
  return pack_locked(t), key
end

local now = now_ms()
local expires = now + tonumber(ARGV[1])
local out, running, saved = {}, {}, {}
local members, tokens = {}, {}
for member, given in string.gmatch(ARGV[2], '(%d+):([%w_%-]+)') do
  members[#members + 1], tokens[#tokens + 1] = member, given
end
for i = 1, #members, 500 do
  local last = math.min(i + 499, #members)
  local raws = redis.call('HMGET', Q.jobs, tunpack(members, i, last))
  for j = i, last do
    local member, raw = members[j], raws[j - i + 1]
    local ok, packed, key = false, nil, nil
    if raw then ok, packed, key = pcall(renewed, raw, tokens[j], now, expires) end
    if ok and key then
      local _, _, locks = limit_keys(key)
      redis.call('ZADD', locks, int(expires), member)
    end
    if ok and packed then
      local k = #saved
      saved[k + 1], saved[k + 2] = member, packed
      running[k + 1], running[k + 2] = int(expires), member
      out[j] = '1'
    else
      out[j] = '0'
    end
  end
end
call_chunked('HSET', Q.jobs, saved, 500)
call_chunked('ZADD', Q.running, running, 500)
return table.concat(out)
