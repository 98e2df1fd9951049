-- A new random key (32 bytes from two random UUIDs), signing after $1 seconds. The secret is
-- made in the database and never leaves it through couponctl.
INSERT INTO event_keys (secret, activates_at)
VALUES (decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'),
        now() + make_interval(secs => $1::float8))
RETURNING id, activates_at::text AS activates_at
