-- Onboarding flows: one row per flow, its state machine's current state and what it is waiting for.
CREATE TABLE onboarding_flows (
    flow_id          TEXT PRIMARY KEY,
    tenant_id        TEXT        NOT NULL,
    applicant_id     TEXT        NOT NULL,
    correlation_id   TEXT        NOT NULL,
    person           JSONB       NOT NULL,
    region           TEXT        NOT NULL,
    risk_tier        TEXT        NOT NULL,
    segment          TEXT,
    state            TEXT        NOT NULL,
    kyc_partner      TEXT,
    kyc_reference    TEXT,
    kyc_tried        TEXT[]      NOT NULL DEFAULT '{}',
    aml_partner      TEXT,
    aml_tried        TEXT[]      NOT NULL DEFAULT '{}',
    attempt          INT         NOT NULL DEFAULT 0,
    failovers        INT         NOT NULL DEFAULT 0,
    reasons          TEXT[]      NOT NULL DEFAULT '{}',
    failure_class    TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at     TIMESTAMPTZ
);

-- Which flow a partner's case belongs to (provider events carry only the partner's reference).
CREATE TABLE provider_refs (
    partner            TEXT NOT NULL,
    provider_reference TEXT NOT NULL,
    flow_id            TEXT NOT NULL,
    PRIMARY KEY (partner, provider_reference)
);

-- Provider events that arrived before the result that names their case; applied when it arrives.
CREATE TABLE parked_provider_events (
    event_id           UUID PRIMARY KEY,
    partner            TEXT        NOT NULL,
    provider_reference TEXT        NOT NULL,
    status             TEXT        NOT NULL,
    reasons            TEXT[]      NOT NULL,
    parked_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX parked_by_ref ON parked_provider_events (partner, provider_reference);

-- Step timeouts: a step that does not finish in time escalates (failover or manual review).
CREATE TABLE flow_timers (
    flow_id TEXT        NOT NULL,
    state   TEXT        NOT NULL,
    due_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (flow_id, state)
);
CREATE INDEX flow_timers_due ON flow_timers (due_at);

-- Shadow calls: recorded, compared, never acted on.
CREATE TABLE shadow_results (
    id          BIGSERIAL PRIMARY KEY,
    flow_id     TEXT        NOT NULL,
    domain      TEXT        NOT NULL,
    partner     TEXT        NOT NULL,
    status      TEXT        NOT NULL,
    detail      JSONB       NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- What happened to each flow, in order (the audit trail operators read).
CREATE TABLE flow_history (
    id       BIGSERIAL PRIMARY KEY,
    flow_id  TEXT        NOT NULL,
    at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    event    TEXT        NOT NULL,
    detail   JSONB       NOT NULL
);
CREATE INDEX flow_history_flow ON flow_history (flow_id, id);
