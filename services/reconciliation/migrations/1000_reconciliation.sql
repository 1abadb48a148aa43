-- What the mesh believes about each payout, built from payouts.outcomes.v1 (never from another
-- service's database).
CREATE TABLE IF NOT EXISTS payouts_seen (
    flow_id            TEXT PRIMARY KEY,
    tenant_id          TEXT        NOT NULL,
    payout_id          TEXT        NOT NULL,
    partner            TEXT,
    provider_reference TEXT,
    status             TEXT        NOT NULL,  -- in_flight | settled | failed | returned
    amount_minor       BIGINT,
    currency           TEXT,
    reversed           BOOLEAN     NOT NULL DEFAULT false,
    first_seen         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS payouts_seen_ref ON payouts_seen (partner, provider_reference);

-- Findings: one per disagreement (its fingerprint: kind, partner, subject), with a lifecycle.
CREATE TABLE IF NOT EXISTS findings (
    id                 BIGSERIAL PRIMARY KEY,
    fingerprint        TEXT        NOT NULL UNIQUE,
    kind               TEXT        NOT NULL,
    domain             TEXT        NOT NULL,
    partner            TEXT        NOT NULL,
    internal_reference TEXT,
    provider_reference TEXT,
    detail             TEXT        NOT NULL,
    currency           TEXT,
    amount_at_risk     BIGINT,                -- minor units
    evidence           JSONB       NOT NULL,  -- the partner's record and ours
    state              TEXT        NOT NULL DEFAULT 'open',  -- open | acknowledged | resolved
    owner              TEXT,
    resolution         TEXT,                  -- matched_late | written_off | corrected
    first_seen         TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen          TIMESTAMPTZ NOT NULL DEFAULT now(),
    first_run          BIGINT      NOT NULL,
    resolved_at        TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS findings_state ON findings (state, kind);

-- One row per run: what it looked at and what it found.
CREATE TABLE IF NOT EXISTS recon_runs (
    id          BIGSERIAL PRIMARY KEY,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ,
    dry_run     BOOLEAN     NOT NULL,
    summary     JSONB
);
