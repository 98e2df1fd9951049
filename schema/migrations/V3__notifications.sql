-- Webhook notifications of issued coupons, queued by the outbox relay when it publishes a
-- coupon's event (so only committed coupons are notified) and delivered by the notifier.
-- `delivery_id` is stable per notification: receivers de-duplicate on it.
CREATE TABLE notifications (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id     uuid        NOT NULL UNIQUE,
    event_id        uuid        NOT NULL,
    coupon_id       uuid        NOT NULL REFERENCES coupons (id),
    status          text        NOT NULL DEFAULT 'pending'
                                CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    -- When the next attempt may start; also the lease of an attempt in progress.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);

CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notifications_dead ON notifications (id) WHERE status = 'dead';
