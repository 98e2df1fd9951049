-- An operator cancels a coupon that is not redeemed. Final: the coupon can no longer be
-- redeemed, and its unit does not return to the campaign's stock.
UPDATE coupons
SET status = 'cancelled', cancelled_at = now()
WHERE id = $1 AND status = 'issued'
RETURNING id, campaign_id, code, status, order_id, issued_at, expires_at, redeemed_at, cancelled_at
