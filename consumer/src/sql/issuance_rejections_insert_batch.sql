INSERT INTO issuance_rejections (id, campaign_id, user_id, seq, reason)
SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::int4[], $5::text[])
ON CONFLICT DO NOTHING
