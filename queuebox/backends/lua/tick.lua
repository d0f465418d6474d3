-- tick: record that a recurring job reached a tick and store its run, in one atomic step.
-- KEYS: the eleven keys of the queue the run goes to (see lib.lua); the tick is kept in
-- KEYS[9] (recurring key -> last tick in ms).
-- ARGV[1] wake channel, ARGV[2] queue name, ARGV[3] recurring job key, ARGV[4] tick in ms,
-- ARGV[5] '1' to store the run ('0' only records the tick), ARGV[6] the run, packed as one job
-- of enqueue.lua's ARGV[3].
-- Nothing changes when the recorded tick is the same or later. A run whose unique key is held
-- is not stored (the tick is still recorded). A run after 9999-12-31T23:59:59Z is refused as
-- enqueue.lua refuses it, and the tick is not recorded.
-- Returns {now, registered (as in enqueue.lua), 1 when the tick was recorded else 0, and when
-- a run was asked for: job number, run_at, '' when it was stored or the holder's record}.
local now = now_ms()
local job = cmsgpack.unpack(ARGV[6])
local refused = ARGV[5] == '1' and too_late(now, job)
if refused then return refused end
local out = {int(now), redis.call('HEXISTS', Q.meta, 'reg'), 0}
local last = redis.call('HGET', Q.ticks, ARGV[3])
if last and tonumber(last) >= tonumber(ARGV[4]) then return out end
redis.call('HSET', Q.ticks, ARGV[3], ARGV[4])
out[3] = 1
if ARGV[5] ~= '1' then return out end
local batch = new_batch()
local n, run_at, held = insert(batch, now, tunpack(job))
flush_batch(batch, now)
out[4], out[5], out[6] = int(n), int(run_at), held
if held == '' then wake(ARGV[1], ARGV[2], batch.ready, batch.paused) end
return out
