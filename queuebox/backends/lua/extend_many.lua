-- extend_many: renew the locks a worker holds on jobs of one queue until now + lease (its
-- heartbeat), each only while the caller holds its lock token.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV[1] lease in ms, ARGV[2] the jobs as "number:token" separated by commas (as in
-- complete_many.lua).
-- Returns one character per job, in order: '1', or '0' (that job unchanged) when the token is
-- not the job's current lock token.
local now = now_ms()
local expires = now + tonumber(ARGV[1])
local out, running = {}, {}
local members, tokens = {}, {}
for member, given in string.gmatch(ARGV[2], '(%d+):([%w_%-]+)') do
  members[#members + 1], tokens[#tokens + 1] = member, given
end
for i = 1, #members, 500 do
  local last = math.min(i + 499, #members)
  local raws = redis.call('HMGET', Q.jobs, tunpack(members, i, last))
  for j = i, last do
    local member, raw = members[j], raws[j - i + 1]
    local ok, r = false, nil
    if raw then ok, r = pcall(decode_job, raw) end
    if ok and r[11] and r[11] == tokens[j] then
      r[6], r[10] = now, expires
      save_job(tonumber(member), r)
      local k = #running
      running[k + 1], running[k + 2] = int(expires), member
      out[j] = '1'
    else
      out[j] = '0'
    end
  end
end
call_chunked('ZADD', Q.running, running, 500)
return table.concat(out)
