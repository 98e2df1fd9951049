-- Admissions the ledger refused, per campaign.
SELECT campaign_id, count(*)
FROM issuance_rejections
WHERE campaign_id = ANY($1::uuid[])
GROUP BY campaign_id
