SELECT user_id, seq, status, issued_at, expires_at
FROM coupons
WHERE id = $1 AND campaign_id = $2
