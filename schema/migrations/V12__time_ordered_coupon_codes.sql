-- A coupon's code: the millisecond it was written (12 hex digits) followed by 80 random bits
-- (20 hex digits), 32 lowercase hex digits as before.
--
-- Why: the UNIQUE index on a fully random code takes every insert at a random leaf page. Once
-- that index outgrows shared_buffers each insert reads a page and dirties another, and the first
-- change of each page after a checkpoint writes a whole-page image to the WAL. A code that starts
-- with its time is inserted at the index's right edge, as the UUID v7 primary key is, so a drop's
-- inserts keep hitting the same few pages whatever the ledger's size (docs/BENCHMARKS.md, "The
-- drain against the ledger's size").
--
-- Still unguessable: 80 bits come from gen_random_uuid (a strong random source): the first group
-- of one UUID (32 bits) and the last group of another (48 bits), neither holding the version or
-- variant digits. What the time prefix tells the code's holder (when the coupon was written) is
-- the coupon's own issued_at, which its owner already sees. Codes already issued keep their
-- value; the UNIQUE constraint is unchanged and still holds across old and new codes.
CREATE OR REPLACE FUNCTION coupon_code() RETURNS text
    LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
    SELECT lpad(to_hex(floor(date_part('epoch', clock_timestamp()) * 1000)::bigint), 12, '0')
        || left(gen_random_uuid()::text, 8)
        || right(gen_random_uuid()::text, 12)
$$;

ALTER TABLE coupons ALTER COLUMN code SET DEFAULT coupon_code();
