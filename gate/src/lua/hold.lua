#!lua
-- Pauses a campaign's admissions while an operator's change is between the gate and the ledger:
-- reserve.lua answers `held` while meta has a `hold`. The change commits in the ledger only after
-- this call, and adjust.lua lifts the hold once the gate holds the change, so nobody is admitted
-- under settings older than a committed change. The instant returned is later than every
-- admission this gate made before the call (their `requested_at`), which makes it the close
-- instant of a close.
--
-- KEYS[1] meta
-- ARGV[1] the change's settings version (the ledger's current one plus one)
-- ARGV[2] starts_ms of the campaign (the ledger's; it never changes)
--
-- Returns {known, since_ms, started, accepted}: known is 0 when the gate does not know the
-- campaign (no hold is set then); since_ms is the hold's instant by the Redis clock, one
-- millisecond past the current one; started is 1 when the Redis clock says the campaign has
-- started or the gate admitted someone already; accepted is the gate's count of admissions.
-- The hold is "<version>:<since_ms>".

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local since = now + 1
if redis.call('HEXISTS', KEYS[1], 'limit') == 0 then
  local started = 0
  if now >= tonumber(ARGV[2]) then
    started = 1
  end
  return {0, since, started, 0}
end
redis.call('HSET', KEYS[1], 'hold', ARGV[1] .. ':' .. since)
local accepted = tonumber(redis.call('HGET', KEYS[1], 'accepted') or '0')
local started = 0
if now >= tonumber(ARGV[2]) or accepted > 0 then
  started = 1
end
return {1, since, started, accepted}
