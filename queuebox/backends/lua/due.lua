-- due: when a worker waiting on one queue should look again. Read-only.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV: none.
-- Returns {now, 1 when a ready job can be claimed else 0, the earliest scheduled run_at, lock
-- expiry or limit-key timer in ms ('' when there is none)}. A paused queue has nothing due.
-- A job held back by its key's limit is not due: its key is out of kidx until a slot frees
-- (the outcome wakes idle workers) or its rate window opens (its ktimer).
local now = now_ms()
if paused() then return {int(now), 0, ''} end
if redis.call('EXISTS', Q.ridx, Q.kidx) > 0 then return {int(now), 1, ''} end
local soonest = nil
for _, key in ipairs({Q.sidx, Q.running, Q.ktimer}) do
  local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if head[1] and (soonest == nil or tonumber(head[2]) < soonest) then
    soonest = tonumber(head[2])
  end
end
return {int(now), 0, soonest and int(soonest) or ''}
