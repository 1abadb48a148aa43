-- Card flows: one row per tenant and card id, for the card's whole life. `card` is the state machine
-- (issuing partner, processor token, last four digits, the operation in flight and those waiting);
-- `issue_order` is what the issue needs to be sent again to another processor on failover (the
-- cardholder's details): emptied once the card is issued.
CREATE TABLE IF NOT EXISTS card_flows (
    flow_id        TEXT PRIMARY KEY,   -- card.<length of tenant>.<tenant>.<card id>
    tenant_id      TEXT        NOT NULL,
    card_id        TEXT        NOT NULL,
    cardholder_id  TEXT        NOT NULL,
    correlation_id TEXT        NOT NULL,
    state_name     TEXT        NOT NULL,   -- REQUESTED | INACTIVE | ACTIVE | FROZEN | TERMINATED | FAILED
    card           JSONB       NOT NULL,
    issue_order    JSONB       NOT NULL DEFAULT '{}',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS card_flows_state ON card_flows (state_name, updated_at);

-- Which card a processor's token belongs to (processor events and authorization decisions name only
-- the token).
CREATE TABLE IF NOT EXISTS card_tokens (
    partner    TEXT NOT NULL,
    card_token TEXT NOT NULL,
    flow_id    TEXT NOT NULL,
    PRIMARY KEY (partner, card_token)
);
