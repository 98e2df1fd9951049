-- Retention: deletes up to $2 `coupon.issued` rows published more than $1 seconds ago, oldest
-- first (the partial index outbox_published_coupons, V11). Rows another transaction holds are
-- skipped, never waited on, so a relay is never held up. Unpublished rows and campaign events
-- stay: a coupon's redelivery is recognised by the coupon row itself, never by its outbox row.
-- The ids are gathered into an array so the delete finds its rows by primary key (as
-- `IN (SELECT ...)` the planner may scan the whole table to join them).
DELETE FROM outbox
WHERE id = ANY(ARRAY(
    SELECT id
    FROM outbox
    WHERE kind = 'coupon.issued'
      AND published_at < now() - make_interval(secs => $1::double precision)
    ORDER BY published_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
))
