-- What the ledger holds for one campaign, for reconciliation.
SELECT c.total_stock,
       c.issued_count,
       c.per_user_limit,
       (SELECT count(*) FROM coupons WHERE campaign_id = c.id) AS coupons,
       (SELECT count(*) FROM issuance_rejections WHERE campaign_id = c.id) AS rejected,
       (SELECT count(*) FROM (
            SELECT user_id FROM coupons WHERE campaign_id = c.id
            GROUP BY user_id HAVING count(*) > c.per_user_limit) over_limit) AS users_over_limit
FROM campaigns c
WHERE c.id = $1
