-- Who decided an authorization: our rules (DECIDED), our fallback when the deadline passed
-- (FALLBACK), or the processor's stand-in rules without asking us (STAND_IN).
ALTER TABLE card_authorizations ADD COLUMN IF NOT EXISTS decided_by TEXT NOT NULL DEFAULT 'DECIDED';

-- The card's flow (its lifecycle's key on Kafka): decisions about the card are keyed by it too, so
-- a card's events stay in order.
ALTER TABLE card_accounts ADD COLUMN IF NOT EXISTS flow_id TEXT;
