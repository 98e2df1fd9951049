#!lua
-- Functions shared by the scripts that record or compare the server's identity and write the
-- ledger's settings (seed.lua, fence.lua, reseed.lua): each is sent with this file in front of it.

-- The server's identity, `run_id:master_replid`: run_id changes with every start of the server
-- (even one that kept its AOF or RDB), master_replid with every new replication history (a
-- promoted replica, a primary that created its backlog).
local function identity()
  local server = redis.call('INFO', 'server')
  local replication = redis.call('INFO', 'replication')
  return (string.match(server, 'run_id:(%x+)') or '?') .. ':'
    .. (string.match(replication, 'master_replid:(%x+)') or '?')
end

-- Writes the ledger's settings (total, limit, starts_ms, ends_ms, closed 0/1, version) into
-- `meta` unless the gate holds a newer version (an operator change applied meanwhile, whose
-- `hold` then stays as it is). A close stays.
local function write_settings(meta, total, limit, starts_ms, ends_ms, closed, version)
  if tonumber(version) < tonumber(redis.call('HGET', meta, 'version') or '0') then
    return
  end
  if redis.call('HGET', meta, 'closed') == '1' then
    closed = '1'
  end
  redis.call('HSET', meta, 'total', total, 'limit', limit, 'starts_ms', starts_ms,
    'ends_ms', ends_ms, 'closed', closed, 'version', version)
end
