-- What the gate is seeded with when it lost a campaign: window, limit, stock and the ledger's count.
SELECT total_stock, issued_count, per_user_limit, starts_at, ends_at
FROM campaigns
WHERE id = $1
