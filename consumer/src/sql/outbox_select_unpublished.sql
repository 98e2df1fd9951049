-- The oldest unpublished outbox rows with their coupons (coupon events) or figures (campaign
-- events), locked for this relay. Rows another relay holds are skipped, so with several
-- consumer pods each row is published by one relay.
SELECT o.id, o.event_id, o.kind, o.traceparent, o.issued, o.total_stock, o.occurred_at,
       c.id AS coupon_id, coalesce(c.campaign_id, o.campaign_id) AS campaign_id, c.user_id,
       c.seq, c.issued_at, c.expires_at
FROM outbox o
LEFT JOIN coupons c ON c.id = o.coupon_id
WHERE o.published_at IS NULL
ORDER BY o.id
LIMIT $1
FOR UPDATE OF o SKIP LOCKED
