-- Campaigns users can see: open now or starting within a week, not closed; soonest first.
SELECT id, name, total_stock, issued_count, per_user_limit, starts_at, ends_at,
       discount_kind, discount_value, coupon_valid_days, closed_at, created_at
FROM campaigns
WHERE closed_at IS NULL AND ends_at > now() AND starts_at < now() + interval '7 days'
ORDER BY starts_at, id
LIMIT 200
