local now = tonumber(ARGV[1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local wait = 0
local tats = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  if tat - now > wait then wait = tat - now end
end
if wait > 0 then return {0, wait} end
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[i + 1])
  redis.call('SET', key, tats[i] + interval, 'PX', math.ceil((interval + 1000000) / 1000))
end
return {1, 0}
