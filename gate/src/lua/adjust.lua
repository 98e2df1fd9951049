#!lua
-- Applies the ledger's settings of a campaign to its gate, when they are newer than the ones the
-- gate holds: changes racing each other land in the ledger's order, and a late or repeated call
-- (the sweeper re-applies the ledger's settings every round) changes nothing. Within a newer
-- version, stock and the window's end only grow and a close is final: `remaining` grows by the
-- difference between the new total and the total the gate knew, atomically with the admissions
-- reserve.lua makes, so a change during a burst neither loses nor invents a unit.
--
-- It also lifts an operator's `hold` (hold.lua) once the gate holds that change's version (or a
-- newer one), or once the hold is older than the lapse: the change that set it died before its
-- ledger commit, or committed and was applied by this very call.
--
-- KEYS[1] meta
-- ARGV[1] total stock, ARGV[2] per-user limit, ARGV[3] starts_ms, ARGV[4] ends_ms,
-- ARGV[5] closed (0 or 1), ARGV[6] settings version (campaigns.settings_version),
-- ARGV[7] hold lapse (ms)
--
-- Returns 1 when it applied the settings, 2 when the gate already holds this version or a newer
-- one (nothing changed but the hold), 0 when the gate does not know the campaign.

if redis.call('HEXISTS', KEYS[1], 'limit') == 0 then
  return 0
end
local version = tonumber(ARGV[6])
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local outcome = 2
if version > current then
  local new_total = tonumber(ARGV[1])
  local total = tonumber(redis.call('HGET', KEYS[1], 'total') or ARGV[1])
  if new_total > total then
    redis.call('HINCRBY', KEYS[1], 'remaining', new_total - total)
    total = new_total
  end
  local ends = math.max(tonumber(ARGV[4]), tonumber(redis.call('HGET', KEYS[1], 'ends_ms') or ARGV[4]))
  local closed = ARGV[5]
  if redis.call('HGET', KEYS[1], 'closed') == '1' then
    closed = '1'
  end
  redis.call('HSET', KEYS[1], 'total', total, 'limit', ARGV[2], 'starts_ms', ARGV[3],
    'ends_ms', ends, 'closed', closed, 'version', version)
  current = version
  outcome = 1
end

local hold = redis.call('HGET', KEYS[1], 'hold')
if hold then
  local sep = string.find(hold, ':', 1, true)
  local held = tonumber(string.sub(hold, 1, sep - 1))
  local since = tonumber(string.sub(hold, sep + 1))
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if held <= current or now - since >= tonumber(ARGV[7]) then
    redis.call('HDEL', KEYS[1], 'hold')
  end
end
return outcome
