UPDATE notifications SET status = 'delivered', delivered_at = now(), last_error = NULL
WHERE id = $1
