DELETE FROM campaigns WHERE id = $1 AND issued_count = 0
