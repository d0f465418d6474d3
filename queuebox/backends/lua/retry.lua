-- retry: make a failed, completed, cancelled or waiting job run now (attempts = 0,
-- run_at = now), or one whose worker died (its lock lapsed).
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV[1] job number, ARGV[2] wake channel, ARGV[3] queue name.
-- A waiting job keeps its unique key; a failed, completed or cancelled one has none and
-- takes none back.
-- Returns 1, or 0 when there is no such job or its lock is live (running).
local n = tonumber(ARGV[1])
local r = load_job(n)
if not r then return 0 end
local now = now_ms()
if r[8] and r[10] > now then return 0 end
local opened = unplace(n, r, now)
unlock(r)
r[5], r[6], r[7], r[13], r[14], r[16] = now, now, 0, false, false, false
save_job(n, r)
wake(ARGV[2], ARGV[3], opened + place(n, r, now))
return 1
