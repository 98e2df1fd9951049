-- Queues the `campaign.opened` event of every campaign whose start passed and whose event is not
-- queued yet ($1: only these campaigns, or NULL for all). A campaign closed before its start
-- never opened. The row lock and the flag queue each event once however many relays and
-- batches race (rows another transaction holds are left for the next round, so this never
-- waits on a batch); the event id, derived from (campaign, kind), is UNIQUE in the outbox too.
WITH due AS (
    SELECT id
    FROM campaigns
    WHERE NOT closed_announced
      AND NOT opened_announced
      AND starts_at <= now()
      AND (closed_at IS NULL OR closed_at > starts_at)
      AND ($1::uuid[] IS NULL OR id = ANY($1::uuid[]))
    ORDER BY id
    FOR UPDATE SKIP LOCKED
), opened AS (
    UPDATE campaigns c
    SET opened_announced = true
    FROM due
    WHERE c.id = due.id
    RETURNING c.id, c.issued_count, c.total_stock, c.starts_at
)
INSERT INTO outbox (event_id, kind, campaign_id, issued, total_stock, occurred_at)
SELECT md5(id::text || ':campaign.opened')::uuid, 'campaign.opened', id, issued_count,
       total_stock, starts_at
FROM opened
ORDER BY starts_at, id
ON CONFLICT (event_id) DO NOTHING
