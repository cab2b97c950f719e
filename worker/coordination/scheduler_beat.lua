-- A scheduler's heartbeat, and for the leader the time its tick finished, both in Redis's
-- own clock (schedulers, the metrics and the health check may run on skewed hosts).
-- KEYS[1] this scheduler's heartbeat, KEYS[2] the last tick's time
-- ARGV[1] what the heartbeat says (JSON), ARGV[2] its TTL in ms, ARGV[3] "1" if it ticked
local now = redis.call('TIME')
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] == '1' then
  redis.call('SET', KEYS[2], now[1] .. '.' .. string.format('%06d', tonumber(now[2])))
end
return 1
