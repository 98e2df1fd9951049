-- The coupon as the user holds it: an unguessable code (122 random bits from gen_random_uuid),
-- and its redemption: once, for one order.
ALTER TABLE coupons
    ADD COLUMN code        text DEFAULT replace(gen_random_uuid()::text, '-', ''),
    ADD COLUMN order_id    text CHECK (length(order_id) BETWEEN 1 AND 128),
    ADD COLUMN redeemed_at timestamptz;

ALTER TABLE coupons ALTER COLUMN code SET NOT NULL;
ALTER TABLE coupons ADD CONSTRAINT coupons_code_unique UNIQUE (code);
-- A redeemed coupon names its order and time; no other status does.
ALTER TABLE coupons ADD CONSTRAINT coupons_redemption
    CHECK ((status = 'redeemed') = (order_id IS NOT NULL AND redeemed_at IS NOT NULL));

-- "My coupons", newest first.
CREATE INDEX coupons_by_user_newest ON coupons (user_id, issued_at DESC, id DESC);
