-- Hands a redeemed coupon back to its owner when the order that redeemed it was refunded or
-- cancelled: it is `issued` again, usable until it expires. The order is kept as the last
-- refunded one, so the same refund again is recognised.
UPDATE coupons
SET status = 'issued', order_id = NULL, redeemed_at = NULL, refunded_order_id = $3
WHERE id = $1 AND user_id = $2 AND status = 'redeemed' AND order_id = $3
RETURNING id, campaign_id, code, status, order_id, issued_at, expires_at, redeemed_at, cancelled_at,
          refunded_order_id
