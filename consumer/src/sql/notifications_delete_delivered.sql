-- Retention: deletes up to $2 notifications delivered more than $1 seconds ago, oldest first
-- (the partial index notifications_delivered, V11). Rows another transaction holds are skipped,
-- never waited on. Pending notifications and dead ones (the operator's to replay) stay.
-- The ids are gathered into an array so the delete finds its rows by primary key.
DELETE FROM notifications
WHERE id = ANY(ARRAY(
    SELECT id
    FROM notifications
    WHERE status = 'delivered'
      AND delivered_at < now() - make_interval(secs => $1::double precision)
    ORDER BY delivered_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
))
