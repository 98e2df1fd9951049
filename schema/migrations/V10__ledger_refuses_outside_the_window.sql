-- The ledger enforces a campaign's rules itself, whatever the gate admitted: besides the stock,
-- the per-user limit and an unknown campaign, it refuses an event requested outside the
-- campaign's window (`outside-window`) or at or after its close (`campaign-closed`). Widening
-- the CHECK keeps every existing row valid and the running consumer's reasons allowed.
ALTER TABLE issuance_rejections DROP CONSTRAINT issuance_rejections_reason_check;
ALTER TABLE issuance_rejections ADD CONSTRAINT issuance_rejections_reason_check CHECK (
    reason IN ('stock-exhausted', 'per-user-limit', 'unknown-campaign', 'outside-window',
               'campaign-closed')
);
