-- The coupon the order service names, if it is this user's, locked for the redemption change:
-- concurrent redeems and refunds of one coupon serialise here.
SELECT id, campaign_id, code, status, order_id, issued_at, expires_at, redeemed_at, cancelled_at
FROM coupons
WHERE id = $1 AND user_id = $2
FOR UPDATE
