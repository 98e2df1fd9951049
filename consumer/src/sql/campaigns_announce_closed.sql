-- Queues the `campaign.closed` event of every campaign an operator closed or whose window ended,
-- once (locking as `campaigns_announce_opened.sql` does). Run after it, so a campaign that
-- opened and closed between two rounds has its events in that order.
WITH due AS (
    SELECT id
    FROM campaigns
    WHERE NOT closed_announced
      AND (closed_at IS NOT NULL OR ends_at <= now())
    ORDER BY id
    FOR UPDATE SKIP LOCKED
), closed AS (
    UPDATE campaigns c
    SET closed_announced = true
    FROM due
    WHERE c.id = due.id
    RETURNING c.id, c.issued_count, c.total_stock,
              LEAST(coalesce(c.closed_at, c.ends_at), c.ends_at) AS at
)
INSERT INTO outbox (event_id, kind, campaign_id, issued, total_stock, occurred_at)
SELECT md5(id::text || ':campaign.closed')::uuid, 'campaign.closed', id, issued_count,
       total_stock, at
FROM closed
ORDER BY at, id
ON CONFLICT (event_id) DO NOTHING
