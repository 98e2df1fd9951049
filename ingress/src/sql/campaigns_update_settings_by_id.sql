-- An operator's change, under the row lock of `campaigns_lock_by_id.sql`, applied only in the
-- allowed direction: stock and the window's end only grow; the per-user limit, the discount and
-- the coupons' validity change only before the start; a closed or ended campaign stays as it is.
-- Bumps `settings_version`: the gate applies a change only when its version is newer.
UPDATE campaigns
SET total_stock       = GREATEST(total_stock, $2),
    per_user_limit    = CASE WHEN now() < starts_at THEN $3 ELSE per_user_limit END,
    ends_at           = GREATEST(ends_at, $4),
    discount_kind     = CASE WHEN now() < starts_at THEN $5 ELSE discount_kind END,
    discount_value    = CASE WHEN now() < starts_at THEN $6 ELSE discount_value END,
    coupon_valid_days = CASE WHEN now() < starts_at THEN $7 ELSE coupon_valid_days END,
    settings_version  = settings_version + 1
WHERE id = $1 AND closed_at IS NULL AND ends_at > now()
RETURNING id, total_stock, per_user_limit, starts_at, ends_at, closed_at, settings_version
