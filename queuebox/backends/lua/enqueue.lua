-- enqueue: store one or more new jobs of one queue, each ready or scheduled by its run_at.
-- KEYS: the eleven keys of the queue (see lib.lua).
-- ARGV[1] wake channel, ARGV[2] queue name (published on the channel), ARGV[3] the jobs,
-- packed by the client as one msgpack array of six values per job: name, handler, priority
-- (the record's first three fields), its delay in ms or '@' followed by its run_at in ms,
-- its unique key (false for none), its flow-control limits (false for none, see insert in
-- lib_jobs.lua). A due limited job goes to its key's buckets (lib_limits.lua).
-- Numbers and times come from the server (the queue's counter and TIME), never the client.
-- When a job would run after 9999-12-31T23:59:59Z (a delay from now too long), nothing is
-- stored and the script returns an error saying which.
-- A job whose unique key is held by a waiting or running job of the queue (in KEYS[8]) is not
-- stored; the holder is returned instead (also when the holder came earlier in this batch).
-- Returns {now, registered (1 when the queue is already in the registry), the number of the
-- first job stored (the others follow in order), then per job not stored: its position in
-- the batch (from 1), the holder's job number and packed record}. The client knows each
-- stored job's run_at (now + delay, or the run_at it gave).
local now = now_ms()
local jobs = cmsgpack.unpack(ARGV[3])
local refused = too_late(now, jobs)
if refused then return refused end
local batch = new_batch()
local out = {int(now), batch.registered, int(batch.start + 1)}
for position = 1, #jobs / JOB_VALUES do
  local i = (position - 1) * JOB_VALUES
  local n, _, held = insert(batch, now, jobs[i + 1], jobs[i + 2], jobs[i + 3], jobs[i + 4],
                            jobs[i + 5], jobs[i + 6])
  if held ~= '' then
    out[#out + 1] = position
    out[#out + 1] = int(n)
    out[#out + 1] = held
  end
end
flush_batch(batch, now)
if batch.seq ~= batch.start then wake(ARGV[1], ARGV[2], batch.ready, batch.paused) end
return out
