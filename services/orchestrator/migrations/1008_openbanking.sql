-- Open-banking flows: a consent (its life: started, authorized, refreshed, revoked; the fetches made
-- under it) or a payment, one row each, keyed by flow id. `flow` is the state machine (provider,
-- the operation in flight, those waiting, the payment's status); `order` what a request needs to
-- be sent again (a payment's amount and beneficiary: payment data, read by the orchestrator alone).
CREATE TABLE IF NOT EXISTS ob_flows (
    flow_id        TEXT PRIMARY KEY,
    tenant_id      TEXT        NOT NULL,
    kind           TEXT        NOT NULL,   -- consent | payment
    customer_id    TEXT        NOT NULL,
    correlation_id TEXT        NOT NULL,
    status         TEXT        NOT NULL,
    flow           JSONB       NOT NULL,
    "order"        JSONB       NOT NULL DEFAULT '{}',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Which flow a provider's reference belongs to (a payment's id, a connection's item).
CREATE TABLE IF NOT EXISTS ob_refs (
    partner            TEXT NOT NULL,
    provider_reference TEXT NOT NULL,
    flow_id            TEXT NOT NULL,
    PRIMARY KEY (partner, provider_reference)
);

-- A payment's next status question (in doubt, or waiting on the bank longer than it should).
CREATE TABLE IF NOT EXISTS ob_timers (
    flow_id TEXT PRIMARY KEY,
    due_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS ob_timers_due ON ob_timers (due_at);
