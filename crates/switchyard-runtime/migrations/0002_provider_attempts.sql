-- Calls to partners, recorded before the call is made (adapters). The idempotency key is derived from
-- the request event id, so a redelivered request finds its earlier attempt.
CREATE TABLE IF NOT EXISTS provider_attempts (
    idempotency_key    TEXT PRIMARY KEY,
    partner            TEXT        NOT NULL,
    request_event_id   UUID        NOT NULL,
    flow_id            TEXT        NOT NULL,
    state              TEXT        NOT NULL,   -- started | succeeded | failed
    provider_reference TEXT,
    calls              INT         NOT NULL DEFAULT 0,
    last_error         TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
