-- The read model of payouts, built from payouts.outcomes.v1 (and the accepted request). No account
-- number here: the beneficiary is shown by the last four characters of the account.
CREATE TABLE IF NOT EXISTS payouts (
    tenant_id          TEXT        NOT NULL,
    payout_id          TEXT        NOT NULL,
    flow_id            TEXT        NOT NULL,
    status             TEXT        NOT NULL,  -- accepted | screening | held_for_review | routed | processing | in_doubt | manual_repair | settled | failed | returned | cancelled
    amount_minor       BIGINT      NOT NULL,
    currency           TEXT        NOT NULL,
    beneficiary        TEXT        NOT NULL,  -- name and masked account
    request_hash       TEXT        NOT NULL,  -- the creating body's fingerprint (a second create with another body is a conflict)
    partner            TEXT,
    provider_reference TEXT,
    reasons            TEXT[]      NOT NULL DEFAULT '{}',
    failure_code       TEXT,
    reversed           BOOLEAN     NOT NULL DEFAULT false,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at       TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, payout_id)
);

-- Standalone fraud scores, built from fraud.outcomes.v1.
CREATE TABLE IF NOT EXISTS fraud_scores (
    tenant_id      TEXT        NOT NULL,
    transaction_id TEXT        NOT NULL,
    status         TEXT        NOT NULL,  -- accepted | scored
    request_hash   TEXT        NOT NULL,
    decision       TEXT,
    score          INT,
    band           TEXT,
    partner        TEXT,
    reasons        TEXT[]      NOT NULL DEFAULT '{}',
    failure_code   TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at   TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, transaction_id)
);
