-- The relay's backlog (served by the partial index on unpublished rows).
SELECT count(*) FROM outbox WHERE published_at IS NULL
