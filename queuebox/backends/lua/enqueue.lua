-- enqueue: store one or more new jobs of one queue, each ready or scheduled by its run_at.
-- KEYS: the nine keys of the queue (see lib.lua).
-- ARGV[1] wake channel, ARGV[2] queue name (published on the channel),
-- then six values per job: name, handler, priority, run_at in ms ('' for now + delay),
-- delay in ms, unique key ('' for none, else '=' followed by the key).
-- A job whose unique key is held by a waiting or running job of the queue (in KEYS[8]) is not
-- stored; the holder is returned instead (also when the holder came earlier in this batch).
-- Returns {now, registered (1 when the queue is already in the registry), then per job:
-- job number, run_at, and '' when the job was stored or the holder's packed record}.
local now = now_ms()
local out = {int(now), redis.call('HEXISTS', Q.meta, 'reg')}
local stored = false
for i = 3, #ARGV, 6 do
  local n, run_at, held = insert(now, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
                                 ARGV[i + 4], ARGV[i + 5])
  if held == '' then stored = true end
  out[#out + 1] = int(n)
  out[#out + 1] = int(run_at)
  out[#out + 1] = held
end
if stored then redis.call('PUBLISH', ARGV[1], ARGV[2]) end
return out
