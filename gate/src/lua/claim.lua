#!lua
-- The sweeper's claim: takes journal entries whose deadline passed, pushes their deadline out
-- by ARGV[1] ms and marks them as rolling forward, so no release can happen to them any more and
-- no other sweeper takes them before that new deadline. Entries without an admission record
-- (cleaned up elsewhere) are dropped from the journal.
--
-- KEYS[1] admissions, KEYS[2] journal, KEYS[3] rolling, KEYS[4] fence
-- ARGV[1] claim duration (ms), ARGV[2] most entries to claim
--
-- Returns a flat list: reservation, admission value, reservation, admission value, ...
-- Empty while the campaign is fenced: the re-seed settles its journal from the ledger.

if redis.call('EXISTS', KEYS[4]) == 1 then
  return {}
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local claimed = {}
for _, id in ipairs(due) do
  local admission = redis.call('HGET', KEYS[1], id)
  if admission then
    redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[1]), id)
    redis.call('HSET', KEYS[3], id, now)
    claimed[#claimed + 1] = id
    claimed[#claimed + 1] = admission
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
return claimed
