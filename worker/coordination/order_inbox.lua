local ids = redis.call('SMEMBERS', KEYS[1])
local found = {}
for _, id in ipairs(ids) do
  local envelope = redis.call('HGET', KEYS[2], id)
  if envelope then
    found[#found + 1] = id
    found[#found + 1] = envelope
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return found
