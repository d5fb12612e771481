-- Stores a run of messages for one channel and announces each on the channel's shard pub/sub
-- channel. Atomic: no other command sees a partial run.
--
-- KEYS[1]    the channel's stream
-- KEYS[2..]  the idempotency keys of the messages that carry one, in message order
-- ARGV[1]    MAXLEN the stream is trimmed to (exact)
-- ARGV[2]    stream TTL in ms
-- ARGV[3]    idempotency window in ms
-- ARGV[4]    the shard pub/sub channel
-- ARGV[5]    n, the number of messages
-- then per message: has-key ("1" or "0"), event, data
--
-- Returns one {id, duplicate (1 or 0)} per message. Each entry stores the previous entry's id
-- in field p ("0-0" for a stream's first entry): see the package doc, "Continuity".
local stream = KEYS[1]
local maxlen = ARGV[1]
local ttl = ARGV[2]
local window = ARGV[3]
local live = ARGV[4]
local n = tonumber(ARGV[5])

local out = {}
local nextKey = 2
local prev = nil
local added = false
for i = 1, n do
  local base = 5 + (i - 1) * 3
  local idem = nil
  local existing = nil
  if ARGV[base + 1] == '1' then
    idem = KEYS[nextKey]
    nextKey = nextKey + 1
    existing = redis.call('GET', idem)
  end
  if existing then
    out[i] = {existing, 1}
  else
    local event = ARGV[base + 2]
    local data = ARGV[base + 3]
    if prev == nil then
      local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
      if #last > 0 then prev = last[1][1] else prev = '0-0' end
    end
    local id = redis.call('XADD', stream, '*', 'p', prev, 'e', event, 'd', data)
    if idem then
      redis.call('SET', idem, id, 'PX', window)
    end
    redis.call('SPUBLISH', live, id .. '\n' .. prev .. '\n' .. event .. '\n' .. data)
    prev = id
    added = true
    out[i] = {id, 0}
  end
end
if added then
  -- One exact trim for the run rather than one per XADD: the same log once the script ends
  -- (nothing sees it in between), at a fraction of the cost for a run of many messages.
  redis.call('XTRIM', stream, 'MAXLEN', maxlen)
  redis.call('PEXPIRE', stream, ttl)
end
return out
