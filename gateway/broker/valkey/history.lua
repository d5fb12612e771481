-- Reads a page of a channel's log together with what proves its continuity, atomically.
--
-- KEYS[1]  the channel's stream
-- ARGV[1]  "f" to read forward (XRANGE), "r" backward (XREVRANGE), "-" for no page
-- ARGV[2]  the exclusive lower bound: "-" (from the start) or "(<id>"
-- ARGV[3]  COUNT for the page
--
-- Returns {} when the stream does not exist, else
-- {first id, first entry's p field or "", last id, page entries}.
local stream = KEYS[1]
local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
if #first == 0 then
  return {}
end
local firstPrev = ''
local fields = first[1][2]
for i = 1, #fields, 2 do
  if fields[i] == 'p' then
    firstPrev = fields[i + 1]
    break
  end
end
local last = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
local page = {}
if ARGV[1] == 'f' then
  page = redis.call('XRANGE', stream, ARGV[2], '+', 'COUNT', ARGV[3])
elseif ARGV[1] == 'r' then
  page = redis.call('XREVRANGE', stream, '+', ARGV[2], 'COUNT', ARGV[3])
end
return {first[1][1], firstPrev, last[1][1], page}
