-- The key the ingress signs with now: the newest active one.
SELECT id FROM event_keys
WHERE activates_at <= now() AND (retired_at IS NULL OR retired_at > now())
ORDER BY activates_at DESC, id DESC
LIMIT 1
