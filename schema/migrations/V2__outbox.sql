-- The transactional outbox: side effects of committed coupons, written in the coupon's own
-- transaction (the consumer's batch insert) and published by the relay afterwards. A row is
-- unpublished until the relay saw Kafka acknowledge its event; a crash in between publishes it
-- again with the same event id, which downstream consumers de-duplicate on.
CREATE TABLE outbox (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Stable per event: for coupon.issued it is the coupon's id.
    event_id     uuid        NOT NULL UNIQUE,
    kind         text        NOT NULL CHECK (kind IN ('coupon.issued')),
    coupon_id    uuid        NOT NULL REFERENCES coupons (id),
    -- W3C trace context of the request that admitted the coupon, when it was traced.
    traceparent  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

-- The relay's queue: only unpublished rows, in order.
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
