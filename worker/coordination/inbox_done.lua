for i, id in ipairs(ARGV) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  if KEYS[3 + i] ~= KEYS[1] then redis.call('SREM', KEYS[3 + i], id) end
end
return false
