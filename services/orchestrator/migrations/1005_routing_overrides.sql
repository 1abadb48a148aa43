-- Operators' routing changes on top of the routing file (`yardctl routes set`): the overrides in
-- force, and every change ever made, who made it and why (never deleted).
CREATE TABLE IF NOT EXISTS routing_overrides (
    partner    TEXT PRIMARY KEY,
    enabled    BOOLEAN,                      -- NULL: as the file says
    is_primary BOOLEAN     NOT NULL DEFAULT false,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS routing_changes (
    id         BIGSERIAL PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    changed_by TEXT        NOT NULL,
    partner    TEXT        NOT NULL,
    action     TEXT        NOT NULL,         -- enable | disable | primary | reset
    reason     TEXT        NOT NULL
);
-- Operators list flows by state and age.
CREATE INDEX IF NOT EXISTS onboarding_flows_state ON onboarding_flows (state, created_at);
CREATE INDEX IF NOT EXISTS payouts_state ON payouts (state_name, created_at);
