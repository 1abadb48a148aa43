-- Per-tenant API keys. Only a SHA-256 of the secret part is stored; the key is shown once.
CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    tenant_id   TEXT        NOT NULL,
    secret_hash TEXT        NOT NULL,
    scopes      TEXT[]      NOT NULL,
    label       TEXT        NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);

-- Idempotency-Key records, scoped per tenant: the request's fingerprint and, once done, the response.
CREATE TABLE idempotency_keys (
    tenant_id       TEXT        NOT NULL,
    idem_key        TEXT        NOT NULL,
    request_hash    TEXT        NOT NULL,
    state           TEXT        NOT NULL,   -- in_flight | done
    response_status INT,
    response_body   JSONB,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, idem_key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);

-- The read model of onboarding flows, built from onboarding.outcomes.v1 (and the accepted request).
CREATE TABLE onboardings (
    flow_id      TEXT PRIMARY KEY,
    tenant_id    TEXT        NOT NULL,
    applicant_id TEXT        NOT NULL,
    status       TEXT        NOT NULL,   -- accepted | in_progress | completed
    step         TEXT,
    decision     TEXT,
    kyc_partner  TEXT,
    aml_partner  TEXT,
    reasons      TEXT[]      NOT NULL DEFAULT '{}',
    failure_code TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ
);
CREATE INDEX onboardings_tenant ON onboardings (tenant_id, created_at);
