-- A campaign the ledger knows, with the coupons it committed.
SELECT issued_count FROM campaigns WHERE id = $1
