-- One page of the operator list, newest first, optionally of one status (derived as the
-- operator view derives it); the cursor is the last row of the previous page.
SELECT id, name, total_stock, issued_count, per_user_limit, starts_at, ends_at,
       discount_kind, discount_value, coupon_valid_days, closed_at, created_at
FROM campaigns
WHERE ($1::text IS NULL OR $1 = CASE
          WHEN closed_at IS NOT NULL THEN 'closed'
          WHEN now() < starts_at THEN 'scheduled'
          WHEN now() >= ends_at THEN 'ended'
          ELSE 'open'
      END)
  AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $4
