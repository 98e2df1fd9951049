-- Campaigns the gate may still hold state for: open, upcoming, or ended within a day, with the
-- settings the gate must enforce. The ingress's sweeper checks, re-applies and (after a loss)
-- re-seeds them; `couponctl verify` checks them by default.
SELECT id, total_stock, per_user_limit, starts_at, ends_at, closed_at, settings_version
FROM campaigns
WHERE ends_at > now() - interval '1 day'
ORDER BY id
