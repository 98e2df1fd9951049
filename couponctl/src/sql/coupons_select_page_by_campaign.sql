-- One page of a campaign's coupons, read to publish their `coupon.issued` events again: keyset
-- pagination after the (user, seq) of the previous page's last row, in the order of the unique
-- index (campaign_id, user_id, seq), so every page is one index range however large the
-- campaign, and one user's coupons come in the order the relay published them. A coupon's
-- event id is its own id (the batch insert queues its outbox row with event_id = coupon id),
-- so a republished event carries the original `ce_id` even where outbox rows are gone.
SELECT id AS event_id, id AS coupon_id, campaign_id, user_id, seq, issued_at, expires_at
FROM coupons
WHERE campaign_id = $1
  AND (user_id, seq) > ($2, $3)
  AND ($4::timestamptz IS NULL OR issued_at >= $4)
ORDER BY user_id, seq
LIMIT $5
