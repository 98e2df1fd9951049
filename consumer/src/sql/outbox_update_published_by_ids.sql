-- Marks outbox rows whose events Kafka acknowledged.
UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])
