SELECT id, campaign_id, code, status, order_id, issued_at, expires_at, redeemed_at, cancelled_at,
       refunded_order_id
FROM coupons
WHERE id = $1 AND user_id = $2
