-- A failed attempt: retried after the given delay, or dead once out of attempts.
UPDATE notifications
SET last_error = $2,
    status = CASE WHEN attempts >= $3 THEN 'dead' ELSE 'pending' END,
    next_attempt_at = now() + make_interval(secs => $4::double precision)
WHERE id = $1
RETURNING status
