-- Which of these issuances the ledger settled, as a coupon or a rejection.
SELECT id FROM coupons WHERE id = ANY($1::uuid[])
UNION
SELECT id FROM issuance_rejections WHERE id = ANY($1::uuid[])
