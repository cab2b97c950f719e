-- ARGV[1]: 'forget' (the entries go, from the inbox and their orders' sets), or 'keep'
-- (they stay in the inbox and in their orders' sets, out of its due index, in the kept
-- set at Redis's time, until the scheduler knows the ledger's standbys have them: a
-- failover can lose an ingested refund, and its order's later cancellation must still
-- see it and wait); then the ids.
local keep = ARGV[1] == 'keep'
local now = 0
if keep then
  local time = redis.call('TIME')
  now = tonumber(time[1]) + tonumber(time[2]) / 1000000
end
for i = 2, #ARGV do
  local id = ARGV[i]
  if keep then
    if redis.call('HEXISTS', KEYS[1], id) == 1 then redis.call('ZADD', KEYS[4], now, id) end
  else
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    if KEYS[3 + i] ~= KEYS[1] then redis.call('SREM', KEYS[3 + i], id) end
  end
  redis.call('ZREM', KEYS[3], id)
end
return false
