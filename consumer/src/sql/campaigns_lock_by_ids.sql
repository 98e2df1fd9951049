-- Locks the batch's campaigns in id order (no deadlock between consumers) and reads how many
-- coupons each can still take, its rules (per-user limit, window, close), and whether its
-- `campaign.opened` event is queued. Every writer of coupons takes this lock first, so the
-- rules and holdings read under it hold until the batch commits.
SELECT id, total_stock - issued_count AS capacity, opened_announced, per_user_limit, starts_at,
       ends_at, closed_at
FROM campaigns
WHERE id = ANY($1::uuid[])
ORDER BY id
FOR UPDATE
