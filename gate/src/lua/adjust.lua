#!lua
-- Applies an operator's change to a campaign's gate. Every argument is absolute, so running it
-- twice (a retried request) changes nothing more. Stock only grows: `remaining` grows by the
-- difference between the new total and the total the gate knew, atomically with the admissions
-- reserve.lua makes, so a change during a burst neither loses nor invents a unit.
--
-- KEYS[1] meta
-- ARGV[1] total stock, ARGV[2] per-user limit, ARGV[3] starts_ms, ARGV[4] ends_ms,
-- ARGV[5] closed (0 or 1)
--
-- Returns 1, or 0 when the gate does not know the campaign (the sweeper re-seeds it).

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local new_total = tonumber(ARGV[1])
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or ARGV[1])
if new_total > total then
  redis.call('HINCRBY', KEYS[1], 'remaining', new_total - total)
  total = new_total
end
local closed = ARGV[5]
if redis.call('HGET', KEYS[1], 'closed') == '1' then
  closed = '1'
end
redis.call('HSET', KEYS[1], 'total', total, 'limit', ARGV[2], 'starts_ms', ARGV[3],
  'ends_ms', ARGV[4], 'closed', closed)
return 1
