-- Every receipt carries its body's SHA-256 and length; a refused webhook's body itself is not kept
-- (it is unauthenticated: anyone can send one).
ALTER TABLE webhook_receipts ADD COLUMN IF NOT EXISTS body_sha256 TEXT;
ALTER TABLE webhook_receipts ADD COLUMN IF NOT EXISTS body_len INT;
