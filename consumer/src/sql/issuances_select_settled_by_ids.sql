-- Issuances already persisted or already rejected: a redelivery of them changes nothing.
SELECT id FROM coupons WHERE id = ANY($1::uuid[])
UNION ALL
SELECT id FROM issuance_rejections WHERE id = ANY($1::uuid[])
