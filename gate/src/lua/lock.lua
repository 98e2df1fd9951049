#!lua
-- Takes or renews a fenced campaign's recovery lock: one pod re-seeds, the others wait.
--
-- KEYS[1] recover (lock), KEYS[2] fence
-- ARGV[1] token of the pod, ARGV[2] lock duration (ms)
--
-- Returns 1 when the pod holds the lock now, 0 when another does or there is no fence.

if redis.call('EXISTS', KEYS[2]) == 0 then
  return 0
end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
