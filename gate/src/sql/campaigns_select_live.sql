-- Campaigns the gate may still hold state for: open, upcoming, or ended within a day. The
-- ingress's sweeper settles their journals; `couponctl verify` checks them by default.
SELECT id
FROM campaigns
WHERE ends_at > now() - interval '1 day'
ORDER BY id
