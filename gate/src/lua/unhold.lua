#!lua
-- Lifts the hold an operator's change set (hold.lua) when that change does not commit: it was
-- refused, took too long, or its commit failed. Only that change's own hold is lifted (a later
-- change may have replaced it). Should the gate still lack a change the ledger committed before
-- (an earlier change whose gate call failed), the hold stays, now for that version, until
-- adjust.lua applies it: admissions never resume under settings older than the ledger's.
--
-- KEYS[1] meta
-- ARGV[1] the hold to lift ("<version>:<since_ms>", as hold.lua wrote it)
-- ARGV[2] the ledger's settings version, without the change
--
-- Returns 1 when the hold was lifted, 2 when it now waits for the ledger's version, 0 when the
-- hold was not this change's.

local hold = redis.call('HGET', KEYS[1], 'hold')
if hold ~= ARGV[1] then
  return 0
end
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current >= tonumber(ARGV[2]) then
  redis.call('HDEL', KEYS[1], 'hold')
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'hold', ARGV[2] .. ':' .. (now + 1))
return 2
