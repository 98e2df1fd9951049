-- Operator decisions carry a version: every change of a campaign's settings (stock, limit,
-- window, discount, validity, close) bumps it in the same statement. The gate (Redis) applies a
-- change only when its version is newer than the one it holds, so changes racing each other
-- land in the ledger's order, and the ingress's sweeper re-applies the ledger's settings to a
-- gate that missed one (docs/RELIABILITY.md, "Operator decisions").
ALTER TABLE campaigns ADD COLUMN settings_version bigint NOT NULL DEFAULT 1;
