-- Returns the epoch: the LastID of channels without messages (see broker.HistoryPage.LastID),
-- creating it on first use as the millisecond before now on the server's clock, so that every
-- stream id the server assigns afterwards is above it. The key has no expiry: it goes only
-- when Valkey loses its data, and then the next epoch is later than any old position.
--
-- KEYS[1]  the epoch key
local epoch = redis.call('GET', KEYS[1])
if epoch then
  return epoch
end
local now = redis.call('TIME')
epoch = tostring(tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - 1) .. '-0'
redis.call('SET', KEYS[1], epoch)
return epoch
