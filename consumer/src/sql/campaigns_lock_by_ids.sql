-- Locks the batch's campaigns in id order (no deadlock between consumers) and reads how many
-- coupons each can still take. Every writer of coupons takes this lock first.
SELECT id, total_stock - issued_count AS capacity
FROM campaigns
WHERE id = ANY($1::uuid[])
ORDER BY id
FOR UPDATE
