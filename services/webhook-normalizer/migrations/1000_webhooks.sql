-- Every webhook received, verified or not, kept for audit and replay. Only signature headers are
-- kept; the body is kept as received.
CREATE TABLE webhook_receipts (
    id           BIGSERIAL PRIMARY KEY,
    partner      TEXT        NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    headers      JSONB       NOT NULL,
    body         BYTEA       NOT NULL,
    verdict      TEXT        NOT NULL,   -- accepted | duplicate | rejected
    reason       TEXT,
    event_id     TEXT
);
CREATE INDEX webhook_receipts_partner_time ON webhook_receipts (partner, received_at);

-- One row per vendor event accepted: a redelivery finds its row and changes nothing.
CREATE TABLE webhook_dedup (
    partner    TEXT        NOT NULL,
    event_id   TEXT        NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (partner, event_id)
);
