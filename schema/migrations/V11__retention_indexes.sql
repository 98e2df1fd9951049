-- Retention: the consumer's purge (consumer/src/effects/purge.rs) deletes, oldest first and a
-- few thousand rows per statement, `coupon.issued` outbox rows published longer ago than
-- OUTBOX_RETENTION_SECS and webhook notifications delivered longer ago than that. Each index
-- below serves exactly one of those statements: a range scan from the oldest row that stops at
-- the cut-off, so a round that finds nothing old reads nothing, however large the table.
-- Campaign events are never purged (a few rows per campaign; the `campaign.sold-out` row is what
-- queues that event once), nor unpublished rows, nor pending or dead notifications, so neither
-- index holds them.
--
-- Not CONCURRENTLY: the migration runner (refinery, schema/src/migrate.rs) applies every
-- migration inside a transaction, where CREATE INDEX CONCURRENTLY is refused. A plain build
-- holds a SHARE lock on its table while it reads it: batch inserts into the outbox, the relay's
-- marking and the notifier's updates wait for the build (seconds on a table of a few million
-- rows), nothing fails. On a much larger outbox, create the same indexes by hand first, outside
-- a transaction (`CREATE INDEX CONCURRENTLY IF NOT EXISTS` with the definitions below); then
-- IF NOT EXISTS makes this migration a no-op.
CREATE INDEX IF NOT EXISTS outbox_published_coupons ON outbox (published_at)
    WHERE kind = 'coupon.issued' AND published_at IS NOT NULL;

CREATE INDEX IF NOT EXISTS notifications_delivered ON notifications (delivered_at)
    WHERE status = 'delivered';
