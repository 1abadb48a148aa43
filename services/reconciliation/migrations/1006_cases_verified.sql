-- A screening read back from its partner and found in agreement is not read again.
ALTER TABLE cases_seen ADD COLUMN IF NOT EXISTS verified_at TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS cases_seen_unverified ON cases_seen (partner, first_seen) WHERE verified_at IS NULL;
