-- Redeems an issued, unexpired coupon of this user for an order. The row lock makes two
-- concurrent redemptions serialise: the second finds the coupon no longer 'issued'.
UPDATE coupons
SET status = 'redeemed', order_id = $3, redeemed_at = now()
WHERE id = $1 AND user_id = $2 AND status = 'issued' AND expires_at > now()
RETURNING id, campaign_id, code, status, order_id, issued_at, expires_at, redeemed_at, cancelled_at
