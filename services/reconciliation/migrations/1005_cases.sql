-- Onboarding's vendor cases as the mesh knows them: from the adapters' results (a flow's) and from
-- the partners' webhooks (maybe no flow's), by partner and the partner's reference.
CREATE TABLE IF NOT EXISTS cases_seen (
    domain             TEXT        NOT NULL,  -- kyc
    partner            TEXT        NOT NULL,
    provider_reference TEXT        NOT NULL,
    flow_id            TEXT,                  -- null: known from a webhook alone
    tenant_id          TEXT,
    request_key        TEXT,                  -- the idempotency key of the request that made it
    status             TEXT        NOT NULL,  -- the canonical status, last known
    shadow             BOOLEAN     NOT NULL DEFAULT false,
    first_seen         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (partner, provider_reference)
);
CREATE INDEX IF NOT EXISTS cases_seen_partner ON cases_seen (partner, first_seen);

-- Every request the mesh sent a partner for a case (its idempotency key is what the case carries).
CREATE TABLE IF NOT EXISTS case_requests (
    request_key  TEXT PRIMARY KEY,
    domain       TEXT        NOT NULL,
    partner      TEXT        NOT NULL,
    flow_id      TEXT        NOT NULL,
    tenant_id    TEXT        NOT NULL,
    shadow       BOOLEAN     NOT NULL DEFAULT false,
    requested_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
