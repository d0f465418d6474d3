-- mark_cancelled: the worker stopped a cancelled run (or the job cancelled itself); keep the
-- job as cancelled.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV[1] job number, ARGV[2] lock token, ARGV[3] '1' when ARGV[4] holds an error to record,
-- ARGV[4] error text, ARGV[5] wake channel (a limited job's slot frees: idle workers of its
-- queue are woken).
-- Unlocks it, frees its unique key, sets cancelled_at when it is not set, and moves it to the
-- cancelled set.
-- Returns 1, or 0 (changing nothing) when the token is not the job's current lock token.
local n = tonumber(ARGV[1])
local r = load_job(n)
if not owned(r, ARGV[2]) then return 0 end
wake_if(ARGV[5], Q.name, cancel_now(n, r, now_ms(), ARGV[3] == '1' and ARGV[4] or nil))
return 1
