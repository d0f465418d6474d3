-- complete_many: several jobs of one queue succeeded; each is deleted, or kept as completed,
-- exactly as complete.lua does for one job, and only while the caller holds its lock token:
-- a wrong token leaves that one job unchanged and does not stop the others.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV[1] '1' to keep the jobs as completed, ARGV[2] the jobs as "number:token" separated by
-- commas (tokens are letters, digits, '_' and '-': the client refuses any other at once),
-- ARGV[3] wake channel (limited jobs' slots free: idle workers of the queue are woken).
-- Returns one character per job, in order: '1', or '0' (that job unchanged) when the token is
-- not the job's current lock token (a job named twice is completed once: the second gets 0).
local keep = ARGV[1] == '1'
local now = keep and now_ms() or nil
local out, finished, ended, stopping, freed = {}, {}, {}, {}, {}
local members, tokens = {}, {}
for member, given in string.gmatch(ARGV[2], '(%d+):([%w_%-]+)') do
  members[#members + 1], tokens[#tokens + 1] = member, given
end
for i = 1, #members, 500 do
  local last = math.min(i + 499, #members)
  local raws = redis.call('HMGET', Q.jobs, tunpack(members, i, last))
  for j = i, last do
    local member, raw = members[j], raws[j - i + 1]
    local ok, t = false, nil
    if raw and not ended[member] then
      -- a job to delete needs only its token and unique key read; one to keep is rewritten
      ok, t = pcall(keep and decode_job or cmsgpack.unpack, raw)
    end
    if ok and type(t) == 'table' and t[11] and t[11] == tokens[j] then
      local unique = t[15]
      ended[member] = true
      finished[#finished + 1] = member
      if t[16] then stopping[#stopping + 1] = member end -- a cancel asked meanwhile
      if t[17] then freed[#freed + 1] = {member, t} end -- limits are read after the loop
      if unique and redis.call('HGET', Q.unique, unique) == member then
        redis.call('HDEL', Q.unique, unique)
      end
      if keep then
        unlock(t)
        t[6], t[14], t[15] = now, now, false
        save_job(tonumber(member), t)
        redis.call('ZADD', Q.done, member, member)
      end
      out[j] = '1'
    else
      out[j] = '0'
    end
  end
end
call_chunked('ZREM', Q.running, finished, 500)
call_chunked('SREM', Q.cancelling, stopping, 500)
if not keep then call_chunked('HDEL', Q.jobs, finished, 500) end
if freed[1] then -- slots free: each key is reviewed once, with every slot of it freed
  now = now or now_ms()
  local reviewed, order, opened = {}, {}, 0
  for _, pair in ipairs(freed) do
    local t = pair[2]
    if limited(t) then
      local _, _, running = limit_keys(t[17])
      redis.call('ZREM', running, pair[1])
      if not reviewed[t[17]] then
        reviewed[t[17]] = t
        order[#order + 1] = t[17]
      end
    end
  end
  for _, key in ipairs(order) do opened = opened + key_review(key, now, reviewed[key]) end
  wake_if(ARGV[3], Q.name, opened)
end
return table.concat(out)
