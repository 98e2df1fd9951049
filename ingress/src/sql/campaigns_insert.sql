INSERT INTO campaigns (id, name, total_stock, per_user_limit, starts_at, ends_at,
                       discount_kind, discount_value, coupon_valid_days)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING created_at
