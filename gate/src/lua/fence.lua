-- (sent after lua/shared.lua, which carries the #!lua shebang and defines identity() and
-- write_settings())
-- Decides whether this server may have lost a campaign's admissions, and fences the campaign if
-- so: its state was built under another server identity (a restart, even one that kept its AOF
-- or RDB; a promoted replica; a restored snapshot), or its state is gone while the ledger has the
-- campaign. A fenced campaign admits nobody (reserve.lua answers `fenced`, release.lua and
-- claim.lua do nothing) until it is re-seeded from a caught-up ledger (reseed.lua).
-- It also writes the ledger's settings, so a closed campaign answers `not-open` while fenced.
--
-- The identity is `run_id:master_replid` (shared.lua). Any change means "new history":
-- possibly lost writes.
--
-- KEYS[1] meta, KEYS[2] fence
-- ARGV[1] fence id (random, names this fence), ARGV[2] 1 to fence whatever the identity says
-- (an operator's repair), ARGV[3..8] the ledger's settings: total, limit, starts_ms, ends_ms,
-- closed (0/1), version
--
-- Returns {'ok' | 'fenced', fence value "<fence id>:<since ms>" or '', identity}.

local identity = identity()

local function settings()
  write_settings(KEYS[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
end

local fence = redis.call('GET', KEYS[2])
if fence then
  settings()
  return {'fenced', fence, identity}
end
if ARGV[2] ~= '1' and redis.call('HGET', KEYS[1], 'rid') == identity then
  return {'ok', '', identity}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
fence = ARGV[1] .. ':' .. now
redis.call('SET', KEYS[2], fence)
settings()
return {'fenced', fence, identity}
