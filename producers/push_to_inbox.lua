local n = (#ARGV - 1) / 5
local conflicts = {}
for i = 0, n - 1 do
  local id, sha = ARGV[2 + i * 5], ARGV[6 + i * 5]
  local first = redis.call('HGET', KEYS[4], id)
  if first and first ~= sha then conflicts[#conflicts + 1] = id end
end
if #conflicts > 0 and ARGV[1] == 'all-or-nothing' then return conflicts end
for i = 0, n - 1 do
  local id, envelope, score = ARGV[2 + i * 5], ARGV[3 + i * 5], ARGV[4 + i * 5]
  local message, sha = ARGV[5 + i * 5], ARGV[6 + i * 5]
  local first = redis.call('HGET', KEYS[4], id)
  if not first then
    redis.call('HSET', KEYS[1], id, envelope)
    redis.call('HSET', KEYS[4], id, sha)
    redis.call('ZADD', KEYS[2], 'NX', score, id)
    if KEYS[5 + i + 1] ~= KEYS[1] then redis.call('SADD', KEYS[5 + i + 1], id) end
    redis.call('LPUSH', KEYS[3], message)
  elseif first ~= sha then
    redis.call('LPUSH', KEYS[5], envelope)
  end
end
return conflicts
