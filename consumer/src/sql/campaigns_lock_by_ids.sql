-- Locks the batch's campaigns in id order (no deadlock between consumers) and reads how many
-- coupons each can still take, and whether its `campaign.opened` event is queued. Every writer
-- of coupons takes this lock first.
SELECT id, total_stock - issued_count AS capacity, opened_announced
FROM campaigns
WHERE id = ANY($1::uuid[])
ORDER BY id
FOR UPDATE
