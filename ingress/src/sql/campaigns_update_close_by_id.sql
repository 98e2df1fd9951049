-- Closes a campaign early (idempotent: the first close time stays).
UPDATE campaigns
SET closed_at = coalesce(closed_at, now())
WHERE id = $1
RETURNING total_stock, per_user_limit, starts_at, ends_at, closed_at
