SELECT user_id, reason
FROM issuance_rejections
WHERE id = $1 AND campaign_id = $2
