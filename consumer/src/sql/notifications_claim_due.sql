-- Claims due notifications for one attempt: their next attempt moves past the lease, so another
-- notifier (or this one after a crash) takes them only once the lease ran out.
UPDATE notifications n
SET next_attempt_at = now() + make_interval(secs => $2::double precision),
    attempts = n.attempts + 1
FROM coupons c
WHERE n.id IN (
    SELECT id FROM notifications
    WHERE status = 'pending' AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
AND c.id = n.coupon_id
RETURNING n.id, n.delivery_id, n.event_id, n.attempts,
          c.id AS coupon_id, c.campaign_id, c.user_id, c.seq, c.issued_at, c.expires_at
