SELECT id, name, total_stock, issued_count, per_user_limit, starts_at, ends_at,
       discount_kind, discount_value, coupon_valid_days, closed_at, created_at
FROM campaigns
WHERE id = $1
