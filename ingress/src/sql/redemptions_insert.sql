-- The redemption just made, at the time the coupon row carries.
INSERT INTO redemptions (coupon_id, order_id, redeemed_at)
VALUES ($1, $2, $3)
