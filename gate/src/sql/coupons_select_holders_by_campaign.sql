-- Who holds which coupon of a campaign, for re-seeding the gate: by user, then coupon number,
-- so the last row of a user carries their count (the (campaign, user, seq) key's index order).
SELECT user_id, seq, id
FROM coupons
WHERE campaign_id = $1
ORDER BY user_id, seq
