SELECT id, campaign_id, code, status, order_id, issued_at, expires_at, redeemed_at
FROM coupons
WHERE id = $1 AND user_id = $2
