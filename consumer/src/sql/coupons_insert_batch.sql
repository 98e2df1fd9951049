-- Inserts the planned coupons, moves each campaign's guarded counter by exactly the rows
-- inserted, and queues one `coupon.issued` outbox row per inserted coupon, in one statement (so
-- in the batch's transaction). ON CONFLICT DO NOTHING and the CHECK on issued_count are the
-- ledger's own last line against duplicates and oversell.
WITH batch AS (
    SELECT *
    FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::int4[], $5::timestamptz[], $6::text[])
        AS b (id, campaign_id, user_id, seq, requested_at, traceparent)
), inserted AS (
    INSERT INTO coupons (id, campaign_id, user_id, seq, requested_at, expires_at)
    SELECT b.id, b.campaign_id, b.user_id, b.seq, b.requested_at,
           now() + make_interval(days => c.coupon_valid_days)
    FROM batch b
    JOIN campaigns c ON c.id = b.campaign_id
    ON CONFLICT DO NOTHING
    RETURNING id, campaign_id
), counted AS (
    UPDATE campaigns c
    SET issued_count = c.issued_count + n.inserted
    FROM (SELECT campaign_id, count(*)::int AS inserted FROM inserted GROUP BY campaign_id) n
    WHERE c.id = n.campaign_id
    RETURNING c.id
), queued AS (
    INSERT INTO outbox (event_id, kind, coupon_id, traceparent)
    SELECT i.id, 'coupon.issued', i.id, b.traceparent
    FROM inserted i JOIN batch b ON b.id = i.id
)
SELECT count(*) AS inserted FROM inserted
