-- One page of a user's coupons, newest first; the cursor is the last row of the previous page.
SELECT id, campaign_id, code, status, order_id, issued_at, expires_at, redeemed_at, cancelled_at
FROM coupons
WHERE user_id = $1
  AND ($2::timestamptz IS NULL OR (issued_at, id) < ($2, $3::uuid))
ORDER BY issued_at DESC, id DESC
LIMIT $4
