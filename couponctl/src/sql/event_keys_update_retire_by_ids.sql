-- Retires the named keys that are not retired yet.
UPDATE event_keys SET retired_at = now()
WHERE id = ANY($1::integer[]) AND (retired_at IS NULL OR retired_at > now())
RETURNING id
