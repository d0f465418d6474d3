-- pause: pause or resume one queue (FlowControl).
-- KEYS: the eleven keys of the queue (see lib.lua); the flag is 'paused' in KEYS[1].
-- ARGV[1] '1' to pause, '0' to resume, ARGV[2] wake channel.
-- A paused queue keeps taking jobs; claim, peek and due see none of them (lib.lua, paused).
-- Resuming wakes the queue's idle workers as an enqueue does, with one token per claimable
-- job (at most WAKE_MAX).
-- Returns 1 when the queue changed state, 0 when it was paused (resumed) already.
if ARGV[1] == '1' then return redis.call('HSETNX', Q.meta, 'paused', '1') end
if redis.call('HDEL', Q.meta, 'paused') == 0 then return 0 end
local ready = (redis.call('EXISTS', Q.ridx, Q.kidx) > 0 or redis.call('EXISTS', Q.sidx) > 0)
  and WAKE_MAX or 0
wake(ARGV[2], Q.name, ready)
return 1
