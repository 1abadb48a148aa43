-- Each claim of an idempotency key carries its owner (the request that took it): only the owner
-- completes or releases it, so a slow original and a retry that took the key over can never both
-- create a flow.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS owner UUID;
