-- (sent after lua/shared.lua, which carries the #!lua shebang and defines identity())
-- Makes a new campaign known to the gate: its settings, its full stock, generation 1 and the
-- identity of the server it was seeded on (fence.lua compares it). Does nothing when the gate
-- already knows the campaign, so running it twice never resets its counters.
--
-- KEYS[1] meta
-- ARGV[1] total, ARGV[2] limit, ARGV[3] starts_ms, ARGV[4] ends_ms, ARGV[5] settings version,
-- ARGV[6] expiry of the key (unix ms)
--
-- Returns 1 when it seeded, 0 when the campaign was known.

if redis.call('HEXISTS', KEYS[1], 'limit') == 1 then
  return 0
end
local identity = identity()
redis.call('HSET', KEYS[1], 'total', ARGV[1], 'limit', ARGV[2], 'starts_ms', ARGV[3],
  'ends_ms', ARGV[4], 'closed', 0, 'version', ARGV[5], 'remaining', ARGV[1], 'accepted', 0,
  'gen', 1, 'rid', identity)
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
return 1
