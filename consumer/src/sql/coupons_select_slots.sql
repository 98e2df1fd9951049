-- Which (campaign, user, seq) slots of the batch are already held by some coupon.
SELECT c.campaign_id, c.user_id, c.seq
FROM coupons c
JOIN UNNEST($1::uuid[], $2::text[], $3::int4[]) AS s (campaign_id, user_id, seq)
  USING (campaign_id, user_id, seq)
