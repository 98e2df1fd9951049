-- Inserts the planned coupons, moves each campaign's guarded counter by exactly the rows
-- inserted, and queues one `coupon.issued` outbox row per inserted coupon (and a campaign's
-- `campaign.sold-out` when its last unit is in), in one statement (so in the batch's
-- transaction). ON CONFLICT DO NOTHING and the CHECK on issued_count are the
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
    RETURNING c.id, c.issued_count, c.total_stock
), queued AS (
    INSERT INTO outbox (event_id, kind, coupon_id, traceparent)
    SELECT i.id, 'coupon.issued', i.id, b.traceparent
    FROM inserted i JOIN batch b ON b.id = i.id
), sold_out AS (
    -- The batch that persists a campaign's last unit queues its `campaign.sold-out` event; once
    -- per campaign (stock added later does not sell out anew).
    INSERT INTO outbox (event_id, kind, campaign_id, issued, total_stock, occurred_at)
    SELECT md5(id::text || ':campaign.sold-out')::uuid, 'campaign.sold-out', id, issued_count,
           total_stock, now()
    FROM counted
    WHERE issued_count = total_stock
    ON CONFLICT (event_id) DO NOTHING
)
SELECT count(*) AS inserted FROM inserted
