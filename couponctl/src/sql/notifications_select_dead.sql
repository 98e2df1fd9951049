-- Dead notifications, oldest first: delivery id, coupon, attempts, last error, created.
SELECT delivery_id, coupon_id, attempts, coalesce(last_error, ''), created_at::text
FROM notifications WHERE status = 'dead' ORDER BY id LIMIT $1
