-- The step of a payout still in flight (routed, processing, in_doubt, manual_repair): a payout the
-- flow holds in doubt is the one thing a run may settle from the partner's record.
ALTER TABLE payouts_seen ADD COLUMN IF NOT EXISTS step TEXT;
