-- Hands a coupon redeemed by this order back to its owner: `issued` again, usable until it
-- expires. The order stays in the redemption history as refunded.
UPDATE coupons
SET status = 'issued', order_id = NULL, redeemed_at = NULL, refunded_order_id = $2
WHERE id = $1 AND status = 'redeemed' AND order_id = $2
RETURNING id, campaign_id, code, status, order_id, issued_at, expires_at, redeemed_at, cancelled_at
