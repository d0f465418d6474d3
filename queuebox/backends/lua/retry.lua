-- retry: make a failed, completed or waiting job run now (attempts = 0, run_at = now).
-- KEYS: the nine keys of the queue (see lib.lua).
-- ARGV[1] job number, ARGV[2] wake channel, ARGV[3] queue name.
-- A waiting job keeps its unique key; a failed or completed one has none and takes none back.
-- Returns 1, or 0 when there is no such job or it is locked (running).
local n = tonumber(ARGV[1])
local r = load_job(n)
if not r or r[8] then return 0 end
local now = now_ms()
unplace(n, r)
r[5], r[6], r[7], r[13], r[14] = now, now, 0, false, false
save_job(n, r)
place(n, r, now)
wake(ARGV[2], ARGV[3], 1)
return 1
