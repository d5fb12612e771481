-- Reads a page of a channel's log together with what proves its continuity, atomically.
--
-- KEYS[1]  the channel's stream
-- ARGV[1]  "f" to read forward (XRANGE), "r" backward (XREVRANGE), "s" to find where the newest
--          ARGV[3]-1 entries after the bound begin (no page), "-" for no page
-- ARGV[2]  the exclusive lower bound: "-" (from the start) or "(<id>"
-- ARGV[3]  COUNT for the page
-- ARGV[4]  for "f": the most bytes of event and data the page may hold (at least one entry is
--          returned); "0" for no bound
--
-- Returns {} when the stream does not exist, else
-- {first id, first entry's p field or "", last id, page entries, note}; note is "cut" when the
-- byte bound ended a forward page, for "s" the id right before the newest ARGV[3]-1 entries when
-- more follow the bound, else "".
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
local note = ''
local count = tonumber(ARGV[3])
local maxBytes = tonumber(ARGV[4] or '0')
if ARGV[1] == 'f' and maxBytes > 0 then
  -- In chunks, so that a bound reached early does not read (and copy) the whole count.
  local from, bytes = ARGV[2], 0
  while #page < count and note == '' do
    local want = math.min(count - #page, 32)
    local chunk = redis.call('XRANGE', stream, from, '+', 'COUNT', want)
    for _, e in ipairs(chunk) do
      local size, f = 0, e[2]
      for i = 1, #f, 2 do
        if f[i] == 'd' or f[i] == 'e' then size = size + #f[i + 1] end
      end
      if #page > 0 and bytes + size > maxBytes then
        note = 'cut'
        break
      end
      bytes = bytes + size
      page[#page + 1] = e
    end
    if note ~= '' or #chunk < want then break end
    from = '(' .. chunk[#chunk][1]
  end
elseif ARGV[1] == 'f' then
  page = redis.call('XRANGE', stream, ARGV[2], '+', 'COUNT', count)
elseif ARGV[1] == 'r' then
  page = redis.call('XREVRANGE', stream, '+', ARGV[2], 'COUNT', count)
elseif ARGV[1] == 's' then
  local newest = redis.call('XREVRANGE', stream, '+', ARGV[2], 'COUNT', count)
  if #newest == count then
    note = newest[count][1]
  end
end
return {first[1][1], firstPrev, last[1][1], page, note}
