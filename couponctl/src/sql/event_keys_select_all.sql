-- Every event key with its state; never the secret. The signing key is the newest one whose
-- activation has passed and that is not retired (as the ingress chooses).
WITH signing AS (
    SELECT id FROM event_keys
    WHERE activates_at <= now() AND (retired_at IS NULL OR retired_at > now())
    ORDER BY activates_at DESC, id DESC
    LIMIT 1
)
SELECT k.id,
       CASE
           WHEN k.retired_at <= now() THEN 'retired'
           WHEN k.activates_at > now() THEN 'pending'
           WHEN k.id = (SELECT id FROM signing) THEN 'signing'
           ELSE 'active'
       END AS state,
       k.created_at::text AS created_at,
       k.activates_at::text AS activates_at,
       coalesce(k.retired_at::text, '') AS retired_at
FROM event_keys k
ORDER BY k.activates_at, k.id
