-- Redemption history: one row per (coupon, order). The order service redeems a coupon for an
-- order and may later refund that order; a refund names a real redemption, and a late or
-- replayed redeem for an order already refunded finds its row and does not redeem again.
CREATE TABLE redemptions (
    coupon_id   uuid        NOT NULL REFERENCES coupons (id),
    order_id    text        NOT NULL CHECK (length(order_id) BETWEEN 1 AND 128),
    redeemed_at timestamptz NOT NULL,
    refunded_at timestamptz,
    PRIMARY KEY (coupon_id, order_id),
    CHECK (refunded_at IS NULL OR refunded_at >= redeemed_at)
);

-- A coupon has at most one open redemption: the one its row names.
CREATE UNIQUE INDEX redemptions_one_open ON redemptions (coupon_id) WHERE refunded_at IS NULL;

-- The history of coupons redeemed or refunded before this table existed. The time of an old
-- refund's redemption is not known; the coupon's issue time stands in for both.
INSERT INTO redemptions (coupon_id, order_id, redeemed_at)
SELECT id, order_id, redeemed_at FROM coupons WHERE status = 'redeemed';
INSERT INTO redemptions (coupon_id, order_id, redeemed_at, refunded_at)
SELECT id, refunded_order_id, issued_at, issued_at FROM coupons WHERE refunded_order_id IS NOT NULL
ON CONFLICT DO NOTHING;
