-- Queues one webhook notification per published coupon event (idempotent on the delivery id).
INSERT INTO notifications (delivery_id, event_id, coupon_id)
SELECT o.event_id, o.event_id, o.coupon_id
FROM outbox o
WHERE o.id = ANY($1::bigint[]) AND o.kind = 'coupon.issued'
ON CONFLICT (delivery_id) DO NOTHING
