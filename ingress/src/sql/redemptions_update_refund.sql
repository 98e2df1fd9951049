-- Marks the order's redemption of the coupon refunded.
UPDATE redemptions
SET refunded_at = now()
WHERE coupon_id = $1 AND order_id = $2 AND refunded_at IS NULL
