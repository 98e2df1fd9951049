-- The redemption of this coupon for this order, if there was one, and whether it was refunded.
SELECT refunded_at IS NOT NULL AS refunded
FROM redemptions
WHERE coupon_id = $1 AND order_id = $2
