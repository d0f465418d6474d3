-- due: when a worker waiting on one queue should look again. Read-only.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV: none.
-- Returns {now, 1 when a ready job waits else 0, the earliest scheduled run_at or lock expiry
-- in ms ('' when there is none)}.
local now = now_ms()
if redis.call('EXISTS', Q.ridx) == 1 then return {int(now), 1, ''} end
local soonest = nil
for _, key in ipairs({Q.sidx, Q.running}) do
  local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if head[1] and (soonest == nil or tonumber(head[2]) < soonest) then
    soonest = tonumber(head[2])
  end
end
return {int(now), 0, soonest and int(soonest) or ''}
