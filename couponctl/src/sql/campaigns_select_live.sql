-- Campaigns `verify` checks by default: open, upcoming, or ended within a day.
SELECT id
FROM campaigns
WHERE ends_at > now() - interval '1 day'
ORDER BY id
