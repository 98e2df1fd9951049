-- (sent after lua/shared.lua, which carries the #!lua shebang and defines identity() and
-- write_settings())
-- Re-seeds a fenced campaign from a ledger that has caught up with every event already in
-- Kafka, in one atomic step, and lifts the fence. Only the pod holding the recovery lock, for
-- the fence it recovered from, can do it: a late pod with an older ledger read finds another
-- lock or no fence, and changes nothing.
--
-- KEYS[1] meta, KEYS[2] holders, KEYS[3] slots, KEYS[4] admissions, KEYS[5] journal,
-- KEYS[6] rolling, KEYS[7] released, KEYS[8] fence, KEYS[9] recover (lock),
-- KEYS[10] staged holders, KEYS[11] staged slots (written by the recovering pod from the ledger)
-- ARGV[1] lock token, ARGV[2] fence value recovered from, ARGV[3..8] the ledger's settings:
-- total, limit, starts_ms, ends_ms, closed (0/1), version; ARGV[9] coupons in the ledger,
-- ARGV[10] expiry of the campaign's keys (unix ms), ARGV[11] release reason, ARGV[12..]
-- reservations of the old journal the ledger does not hold (their events never reached Kafka).
--
-- Returns {'reseeded', generation} or {'stale', 0}.

if redis.call('GET', KEYS[9]) ~= ARGV[1] or redis.call('GET', KEYS[8]) ~= ARGV[2] then
  return {'stale', 0}
end
local identity = identity()

for i = 12, #ARGV do
  local admission = redis.call('HGET', KEYS[4], ARGV[i])
  if admission then
    local second = string.find(admission, ':', string.find(admission, ':', 1, true) + 1, true)
    redis.call('HSET', KEYS[7], ARGV[i], ARGV[11] .. ':' .. string.sub(admission, second + 1))
  end
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
if redis.call('EXISTS', KEYS[10]) == 1 then
  redis.call('RENAME', KEYS[10], KEYS[2])
end
if redis.call('EXISTS', KEYS[11]) == 1 then
  redis.call('RENAME', KEYS[11], KEYS[3])
end
-- Settings: the ledger's, unless an operator change newer than this read was applied meanwhile
-- (its `hold`, if any, stays: the change finishes as it would have).
write_settings(KEYS[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
local issued = tonumber(ARGV[9])
local generation = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0') + 1
redis.call('HSET', KEYS[1], 'remaining', math.max(total - issued, 0), 'accepted', issued,
  'gen', generation, 'rid', identity)
redis.call('DEL', KEYS[8], KEYS[9])
for i = 1, 7 do
  redis.call('PEXPIREAT', KEYS[i], ARGV[10])
end
return {'reseeded', generation}
