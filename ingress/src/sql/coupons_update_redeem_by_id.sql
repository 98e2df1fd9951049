-- Redeems an issued, unexpired coupon (locked by the caller) for an order.
UPDATE coupons
SET status = 'redeemed', order_id = $2, redeemed_at = now()
WHERE id = $1 AND status = 'issued' AND expires_at > now()
RETURNING id, campaign_id, code, status, order_id, issued_at, expires_at, redeemed_at, cancelled_at
