"""The Lua scripts of the shared generation slots (piagent.shared_slots).

Each runs atomically in Redis, with Redis's own clock (TIME), so machines
whose clocks differ still agree on when a lease ends.
"""

# KEYS: holders of the host, line, ticket leases, wanted host per ticket,
# arrival counter, epoch. ARGV: id, slots per host, lease ms, most waiting,
# host. Returns {1, 0} admitted, {0, place} waiting, {-1, place} line full,
# {-2, ms} line full while a Redis that started empty settles.
ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
local epoch = redis.call('GET', KEYS[6])
if not epoch then
  epoch = now
  redis.call('SET', KEYS[6], now)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  redis.call('ZREM', KEYS[2], gone)
  redis.call('ZREM', KEYS[3], gone)
  redis.call('HDEL', KEYS[4], gone)
end
local me = ARGV[1]
local queued = redis.call('ZSCORE', KEYS[2], me)
local ahead = 0
for _, ticket in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if ticket == me then break end
  if redis.call('HGET', KEYS[4], ticket) == ARGV[5] then ahead = ahead + 1 end
end
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
if now >= tonumber(epoch) + lease and ahead < free then
  redis.call('ZADD', KEYS[1], now + lease, me)
  if queued then
    redis.call('ZREM', KEYS[2], me)
    redis.call('ZREM', KEYS[3], me)
    redis.call('HDEL', KEYS[4], me)
  end
  return {1, 0}
end
if not queued then
  local size = redis.call('ZCARD', KEYS[2])
  if size >= tonumber(ARGV[4]) then
    local settling = tonumber(epoch) + lease - now
    if settling > 0 then return {-2, settling} end
    return {-1, size + 1}
  end
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[5]), me)
end
redis.call('ZADD', KEYS[3], now + lease, me)
redis.call('HSET', KEYS[4], me, ARGV[5])
return {0, ahead + 1}
"""

# KEYS: the holders' sets, one per held slot, then the epoch. ARGV: lease ms,
# then the holders' ids. Re-adds a holder a restarted Redis lost.
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[#KEYS], now, 'NX')
for i = 1, #KEYS - 1 do
  redis.call('ZADD', KEYS[i], now + tonumber(ARGV[1]), ARGV[i + 1])
end
"""

# KEYS: holders of the host, recent durations. ARGV: id, seconds ('' if none).
RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
end
"""
