-- The campaign an operator is changing, locked until the change commits or rolls back: changes
-- of one campaign run one after the other, each on the settings (and `settings_version`) the one
-- before committed. `ledger_now` is the ledger's clock, which decides "before the start".
SELECT id, name, total_stock, issued_count, per_user_limit, starts_at, ends_at,
       discount_kind, discount_value, coupon_valid_days, closed_at, created_at,
       settings_version, now() AS ledger_now
FROM campaigns
WHERE id = $1
FOR UPDATE
