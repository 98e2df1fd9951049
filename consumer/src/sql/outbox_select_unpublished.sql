-- The oldest unpublished outbox rows with their coupons, locked for this relay. Rows another
-- relay holds are skipped, so with several consumer pods each row is published by one relay.
SELECT o.id, o.event_id, o.kind, o.traceparent,
       c.id AS coupon_id, c.campaign_id, c.user_id, c.seq, c.issued_at, c.expires_at
FROM outbox o
JOIN coupons c ON c.id = o.coupon_id
WHERE o.published_at IS NULL
ORDER BY o.id
LIMIT $1
FOR UPDATE OF o SKIP LOCKED
