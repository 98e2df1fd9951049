-- One campaign's settings as the gate must enforce them.
SELECT id, total_stock, per_user_limit, starts_at, ends_at, closed_at, settings_version
FROM campaigns
WHERE id = $1
