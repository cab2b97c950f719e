local now = tonumber(ARGV[1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local penalty = tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  redis.call('SET', key, tat + penalty, 'PX', math.ceil((penalty + 1000000) / 1000))
end
return 1
