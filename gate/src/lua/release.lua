#!lua
-- Undoes one admission whose event Kafka definitively did not persist, so the stock returns.
-- Only a reservation still in the journal and not yet claimed by the sweeper can be released:
-- release and roll-forward never both happen to one reservation. Idempotent.
--
-- KEYS[1] meta, KEYS[2] holders, KEYS[3] slots, KEYS[4] admissions, KEYS[5] journal
-- (as in reserve.lua), KEYS[6] rolling (hash: reservations the sweeper claimed),
-- KEYS[7] released (hash: reservation uuid -> "<reason>:<user>"), KEYS[8] fence
-- ARGV[1] reservation uuid (32 hex), ARGV[2] reason, ARGV[3] the seed generation the
-- reservation was admitted in
--
-- Returns 1 when it released, 0 when there was nothing it may release. Nothing is released
-- while the campaign is fenced or into another generation's seed: the re-seed settles those
-- reservations from the ledger.

if redis.call('EXISTS', KEYS[8]) == 1
  or (redis.call('HGET', KEYS[1], 'gen') or '0') ~= ARGV[3]
  or redis.call('HEXISTS', KEYS[6], ARGV[1]) == 1 then
  return 0
end
local admission = redis.call('HGET', KEYS[4], ARGV[1])
if not admission or redis.call('ZREM', KEYS[5], ARGV[1]) == 0 then
  return 0
end
local first = string.find(admission, ':', 1, true)
local second = string.find(admission, ':', first + 1, true)
local seq = tonumber(string.sub(admission, 1, first - 1))
local user = string.sub(admission, second + 1)

redis.call('HINCRBY', KEYS[1], 'remaining', 1)
redis.call('HINCRBY', KEYS[1], 'accepted', -1)
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HSET', KEYS[7], ARGV[1], ARGV[2] .. ':' .. user)
-- Only the user's newest slot can be handed back; an older one stays used, so a later admission
-- never reuses a sequence number that another reservation of this user still holds.
if tonumber(redis.call('HGET', KEYS[2], user) or '0') == seq then
  redis.call('HDEL', KEYS[3], seq .. ':' .. user)
  if seq == 1 then
    redis.call('HDEL', KEYS[2], user)
  else
    redis.call('HSET', KEYS[2], user, seq - 1)
  end
end
return 1
