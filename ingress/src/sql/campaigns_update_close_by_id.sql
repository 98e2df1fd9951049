-- Closes a campaign early, under the row lock of `campaigns_lock_by_id.sql`, at the instant the
-- gate stopped admitting for it ($2, by the Redis clock that stamps every admission's
-- `requested_at`): the ledger refuses an admission at or after it. Bumps `settings_version`.
UPDATE campaigns
SET closed_at        = $2,
    settings_version = settings_version + 1
WHERE id = $1 AND closed_at IS NULL
RETURNING id, total_stock, per_user_limit, starts_at, ends_at, closed_at, settings_version
