-- Payout flows: one row per tenant and payout id. The command is payout data (the beneficiary's
-- account is needed to pay): this table is read by the orchestrator alone, never logged.
CREATE TABLE IF NOT EXISTS payouts (
    flow_id         TEXT PRIMARY KEY,     -- <length of tenant>.<tenant>.<payout id>
    tenant_id       TEXT        NOT NULL,
    payout_id       TEXT        NOT NULL,
    correlation_id  TEXT        NOT NULL,
    command         JSONB       NOT NULL,
    currency        TEXT        NOT NULL,
    amount_minor    BIGINT      NOT NULL,
    beneficiary_key TEXT        NOT NULL, -- SHA-256 of the account: velocity and fraud see only this
    state_name      TEXT        NOT NULL,
    state           JSONB       NOT NULL,
    attempt         INT         NOT NULL DEFAULT 0,
    flags           TEXT[]      NOT NULL DEFAULT '{}',
    velocity        JSONB,                -- what was reserved, to give back if nothing is paid
    rescores        INT         NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at    TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS payouts_state ON payouts (state_name, updated_at);

-- Which payout a partner's reference belongs to (status webhooks name only the reference).
CREATE TABLE IF NOT EXISTS payout_refs (
    partner            TEXT NOT NULL,
    provider_reference TEXT NOT NULL,
    flow_id            TEXT NOT NULL,
    PRIMARY KEY (partner, provider_reference)
);

-- Status webhooks that came before the answer naming their payout; applied when it comes.
CREATE TABLE IF NOT EXISTS payout_parked (
    event_id           UUID PRIMARY KEY,
    partner            TEXT        NOT NULL,
    provider_reference TEXT        NOT NULL,
    notice             JSONB       NOT NULL,
    parked_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS payout_parked_ref ON payout_parked (partner, provider_reference);

-- Payout timers: a status query of a payout in doubt, a late fraud score of one paid unscreened.
CREATE TABLE IF NOT EXISTS payout_timers (
    flow_id TEXT        NOT NULL,
    kind    TEXT        NOT NULL,
    due_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (flow_id, kind)
);
CREATE INDEX IF NOT EXISTS payout_timers_due ON payout_timers (due_at);

-- Velocity: what each beneficiary and tenant has been paid (or is being paid) per window.
CREATE TABLE IF NOT EXISTS payout_velocity (
    scope        TEXT        NOT NULL,    -- b:<tenant>:<beneficiary key> or t:<tenant>
    window_start TIMESTAMPTZ NOT NULL,
    currency     TEXT        NOT NULL,
    count        BIGINT      NOT NULL DEFAULT 0,
    amount_minor BIGINT      NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, window_start, currency)
);

-- Standalone fraud scores (fraud.commands.v1).
CREATE TABLE IF NOT EXISTS fraud_checks (
    flow_id        TEXT PRIMARY KEY,
    tenant_id      TEXT        NOT NULL,
    transaction_id TEXT        NOT NULL,
    correlation_id TEXT        NOT NULL,
    command        JSONB       NOT NULL,
    partner        TEXT        NOT NULL,
    tried          TEXT[]      NOT NULL,
    fail_open_below_minor BIGINT,
    decision       TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at   TIMESTAMPTZ
);
