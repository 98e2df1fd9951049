-- An operator's change, applied only in the allowed direction: stock and the window's end only
-- grow, the per-user limit changes only before the start, and a closed campaign stays as it is.
UPDATE campaigns
SET total_stock    = GREATEST(total_stock, $2),
    per_user_limit = CASE WHEN now() < starts_at THEN $3 ELSE per_user_limit END,
    ends_at        = GREATEST(ends_at, $4)
WHERE id = $1 AND closed_at IS NULL
RETURNING total_stock, per_user_limit, starts_at, ends_at, closed_at
