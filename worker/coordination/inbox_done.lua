for i, id in ipairs(ARGV) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  if KEYS[4 + i] ~= KEYS[1] then redis.call('SREM', KEYS[4 + i], id) end
end
if KEYS[4] ~= KEYS[1] then return redis.call('GET', KEYS[4]) end
return false
