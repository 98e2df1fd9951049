#!lua
-- Decides and records one issuance request atomically. O(1): a fixed number of hash operations.
-- Every check runs before the first write, so a refused request changes nothing, and the shebang
-- (no allow-oom flag) makes an out-of-memory Redis refuse the whole call before any write.
--
-- KEYS[1] meta        hash: remaining, accepted, total, limit, starts_ms, ends_ms, closed,
--                     version, gen, rid, hold (docs/ARCHITECTURE.md, "The gate's keys")
-- KEYS[2] holders     hash: user -> coupons reserved by that user (0..limit)
-- KEYS[3] slots       hash: "<seq>:<user>" -> reservation uuid (32 hex)
-- KEYS[4] admissions  hash: reservation uuid -> "<seq>:<requested_ms>:<user>"
-- KEYS[5] journal     zset: reservation uuid -> deadline (ms) by which Kafka must have confirmed
--                     it; past the deadline the sweeper rolls it forward (re-produces it)
-- KEYS[6] fence       set while this server may have lost the campaign's admissions (fence.lua)
-- ARGV[1] user id, ARGV[2] reservation uuid for a new admission (32 hex)
-- ARGV[3] journal deadline, in ms after the admission
--
-- Returns {outcome, reservation, seq, now_ms, generation}; outcome is one of
-- accepted | duplicate | sold-out | not-open | unknown | fenced | held.
-- The decision rules mirror `rules::decide` in Rust, which holds their property tests.

local meta = redis.call('HMGET', KEYS[1], 'remaining', 'limit', 'starts_ms', 'ends_ms', 'closed',
  'hold', 'gen')
local fenced = redis.call('EXISTS', KEYS[6]) == 1
if not meta[2] then
  if fenced then
    return {'fenced', '', 0, 0, 0}
  end
  return {'unknown', '', 0, 0, 0}
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if meta[5] == '1' or now < tonumber(meta[3]) or now >= tonumber(meta[4]) then
  return {'not-open', '', 0, now, 0}
end
if fenced then
  return {'fenced', '', 0, now, 0}
end
if meta[6] then
  return {'held', '', 0, now, 0}
end

local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if held >= tonumber(meta[2]) then
  local last = redis.call('HGET', KEYS[3], held .. ':' .. ARGV[1]) or ''
  return {'duplicate', last, held, now, 0}
end

if tonumber(meta[1]) <= 0 then
  return {'sold-out', '', 0, now, 0}
end

local seq = held + 1
redis.call('HINCRBY', KEYS[1], 'remaining', -1)
redis.call('HINCRBY', KEYS[1], 'accepted', 1)
redis.call('HSET', KEYS[2], ARGV[1], seq)
redis.call('HSET', KEYS[3], seq .. ':' .. ARGV[1], ARGV[2])
redis.call('HSET', KEYS[4], ARGV[2], seq .. ':' .. now .. ':' .. ARGV[1])
redis.call('ZADD', KEYS[5], now + tonumber(ARGV[3]), ARGV[2])
return {'accepted', ARGV[2], seq, now, tonumber(meta[7] or '0')}
