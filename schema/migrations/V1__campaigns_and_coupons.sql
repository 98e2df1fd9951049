-- The ledger. PostgreSQL alone refuses an oversell (issued_count is guarded by a CHECK and moved
-- in the same transaction as the coupon rows) and a duplicate (UNIQUE (campaign_id, user_id, seq)).

CREATE TABLE campaigns (
    id                uuid        PRIMARY KEY,
    name              text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    total_stock       integer     NOT NULL CHECK (total_stock >= 0),
    issued_count      integer     NOT NULL DEFAULT 0,
    per_user_limit    integer     NOT NULL DEFAULT 1 CHECK (per_user_limit BETWEEN 1 AND 100),
    starts_at         timestamptz NOT NULL,
    ends_at           timestamptz NOT NULL,
    discount_kind     text        NOT NULL CHECK (discount_kind IN ('fixed', 'percent')),
    discount_value    bigint      NOT NULL CHECK (discount_value > 0),
    coupon_valid_days integer     NOT NULL CHECK (coupon_valid_days BETWEEN 1 AND 3650),
    closed_at         timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT campaigns_window CHECK (ends_at > starts_at),
    CONSTRAINT campaigns_percent CHECK (discount_kind <> 'percent' OR discount_value <= 100),
    CONSTRAINT campaigns_no_oversell CHECK (issued_count BETWEEN 0 AND total_stock)
);

-- One row per persisted coupon. `id` is the reservation's UUID from the issuance id, so a
-- redelivered event finds its own row and inserts nothing.
CREATE TABLE coupons (
    id           uuid        PRIMARY KEY,
    campaign_id  uuid        NOT NULL REFERENCES campaigns (id),
    user_id      text        NOT NULL CHECK (length(user_id) BETWEEN 1 AND 255),
    seq          integer     NOT NULL CHECK (seq >= 1),
    status       text        NOT NULL DEFAULT 'issued'
                             CHECK (status IN ('issued', 'redeemed', 'expired', 'cancelled')),
    requested_at timestamptz NOT NULL,
    issued_at    timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    CONSTRAINT coupons_one_per_slot UNIQUE (campaign_id, user_id, seq)
);

CREATE INDEX coupons_by_user ON coupons (user_id, issued_at DESC);

-- Admissions the ledger refused (Redis over-admitted after losing writes, or the event named a
-- campaign the ledger does not know). Terminal: the issuance's status is `rejected` with the reason.
CREATE TABLE issuance_rejections (
    id          uuid        PRIMARY KEY,
    campaign_id uuid        NOT NULL,
    user_id     text        NOT NULL,
    seq         integer     NOT NULL,
    reason      text        NOT NULL CHECK (reason IN ('stock-exhausted', 'per-user-limit', 'unknown-campaign')),
    rejected_at timestamptz NOT NULL DEFAULT now()
);
