-- Retires every key superseded by a key that has been active for at least $1 seconds: older
-- than the newest key activated at least that long ago. The signing key is never among them.
UPDATE event_keys SET retired_at = now()
WHERE (retired_at IS NULL OR retired_at > now())
  AND (activates_at, id) < (
      SELECT activates_at, id FROM event_keys
      WHERE (retired_at IS NULL OR retired_at > now())
        AND activates_at <= now() - make_interval(secs => $1::float8)
      ORDER BY activates_at DESC, id DESC
      LIMIT 1)
RETURNING id
