-- Dead notifications become pending again with a fresh attempt budget: every one ($1) or the
-- delivery ids named ($2). last_error stays until a delivery succeeds.
UPDATE notifications
SET status = 'pending', attempts = 0, next_attempt_at = now()
WHERE status = 'dead' AND ($1 OR delivery_id = ANY($2))
