-- The write-ahead effect ledger: every call to a partner that can have an effect (a check, a
-- screening, a payout) is recorded here, committed, before the call is made; the partner's answer is
-- committed in its own transaction as soon as it arrives. An `intent` row without an answer after a
-- crash means "may have happened": it is resolved by asking the partner, never by calling again blind.
CREATE TABLE IF NOT EXISTS effect_ledger (
    idempotency_key    TEXT PRIMARY KEY,
    partner            TEXT        NOT NULL,
    operation          TEXT        NOT NULL,
    request_event_id   UUID        NOT NULL,
    flow_id            TEXT        NOT NULL,
    -- intent | answered | not_executed | in_doubt | manual_repair
    state              TEXT        NOT NULL,
    provider_reference TEXT,
    -- What a multi-call operation learnt on the way (e.g. the applicant created before the check).
    checkpoint         JSONB       NOT NULL DEFAULT '{}',
    -- The partner's answer in canonical terms, replayed to a redelivered request.
    outcome            JSONB,
    -- How often the intent was taken up (1 + recoveries after crashes or redeliveries).
    attempts           INT         NOT NULL DEFAULT 1,
    sends              INT         NOT NULL DEFAULT 0,
    last_error         TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS effect_ledger_flow ON effect_ledger (flow_id);
CREATE INDEX IF NOT EXISTS effect_ledger_open ON effect_ledger (state) WHERE state IN ('intent', 'in_doubt', 'manual_repair');
