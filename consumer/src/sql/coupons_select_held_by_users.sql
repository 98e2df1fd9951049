-- The coupons the batch's users already hold in the batch's campaigns, by seq: how many each
-- user holds (against the campaign's per-user limit) and which (campaign, user, seq) slots are
-- taken. Read under the campaigns' row locks. ($1, $2): the batch's campaign and user per event.
SELECT c.campaign_id, c.user_id, c.seq
FROM coupons c
JOIN (
    SELECT DISTINCT campaign_id, user_id
    FROM UNNEST($1::uuid[], $2::text[]) AS b (campaign_id, user_id)
) AS u USING (campaign_id, user_id)
