SELECT user_id, seq, id
FROM coupons
WHERE campaign_id = $1
