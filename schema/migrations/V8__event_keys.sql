-- The keys of the MAC every requested-issuance event carries (`coupon-signature` header,
-- docs/TOPICS.md): the ingress signs with the newest key whose `activates_at` has passed, the
-- consumer accepts any key that is not retired, so a forged event on the topic is dead-lettered.
-- Both load the table at start and re-read it every EVENT_KEYS_REFRESH_MS.
-- `couponctl event-keys rotate` adds a key that activates later than every process's next
-- refresh; `couponctl event-keys retire` retires old ones (docs/OPERATIONS.md, "Event keys").
CREATE TABLE event_keys (
    id           integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    secret       bytea       NOT NULL CHECK (octet_length(secret) >= 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    activates_at timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz
);

-- One key to start with, active at once: 32 bytes from two random UUIDs (244 random bits;
-- gen_random_uuid is built in, pgcrypto is not required).
INSERT INTO event_keys (secret)
VALUES (decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));
