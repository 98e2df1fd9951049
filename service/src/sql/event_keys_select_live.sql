-- The event keys not retired yet, with how far their activation and retirement lie ahead by the
-- database's clock (so the processes' clocks do not matter).
SELECT id,
       secret,
       greatest(0, ceil(extract(epoch FROM activates_at - now()) * 1000))::bigint AS activates_in_ms,
       ceil(extract(epoch FROM retired_at - now()) * 1000)::bigint AS retires_in_ms
FROM event_keys
WHERE retired_at IS NULL OR retired_at > now()
ORDER BY activates_at, id
