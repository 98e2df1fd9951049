-- `coupons_by_user_newest` (V4) serves every read by user; `coupons_by_user` (V1) is its prefix
-- and only cost the consumer's inserts (about 15 % of the drain rate on a ledger of 3 million
-- coupons, docs/BENCHMARKS.md).
DROP INDEX IF EXISTS coupons_by_user;
