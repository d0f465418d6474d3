-- enqueue: store one or more new jobs of one queue, each ready or scheduled by its run_at.
-- KEYS: the nine keys of the queue (see lib.lua).
-- ARGV[1] wake channel, ARGV[2] queue name (published on the channel), ARGV[3] the jobs,
-- packed by the client as one msgpack array of five values per job: name, handler, priority
-- (copied as they are into the record: its first three fields), its delay in ms or '@'
-- followed by its run_at in ms, its unique key ('' for none, else '=' followed by the key).
-- Numbers and times come from the server (the queue's counter and TIME), never the client.
-- A job whose unique key is held by a waiting or running job of the queue (in KEYS[8]) is not
-- stored; the holder is returned instead (also when the holder came earlier in this batch).
-- Returns {now, registered (1 when the queue is already in the registry), the number of the
-- first job stored (the others follow in order), then per job not stored: its position in
-- the batch (from 1), the holder's job number and packed record}. The client knows each
-- stored job's run_at (now + delay, or the run_at it gave).
local now = now_ms()
local batch = new_batch()
local out = {int(now), batch.registered, int(batch.start + 1)}
local jobs = ARGV[3]
local first = string.byte(jobs, 1)
local count, pos = first - 144, 2
if first == 220 then count, pos = rd(jobs, 2, 2), 4 end
if first == 221 then count, pos = rd(jobs, 2, 4), 6 end
for position = 1, count / 5 do
  local start = pos
  pos = skip(jobs, skip(jobs, pos))
  local priority, when, unique
  priority, pos = unpack_at(jobs, pos)
  local head = string.sub(jobs, start, pos - 1)
  when, pos = unpack_at(jobs, pos)
  unique, pos = unpack_at(jobs, pos)
  local n, _, held = insert(batch, now, head, when, unique, priority)
  if held ~= '' then
    out[#out + 1] = position
    out[#out + 1] = int(n)
    out[#out + 1] = held
  end
end
flush_batch(batch)
if batch.seq ~= batch.start then wake(ARGV[1], ARGV[2], batch.ready) end
return out
