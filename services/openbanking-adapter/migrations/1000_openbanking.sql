-- Consents the adapter holds, one per tenant's consent (keyed by its flow id): the provider, the
-- customer's opaque key, where it stands, and the provider's tokens sealed with AES-256-GCM (the
-- key from configuration; the consent's key is the associated data). No token is ever stored in
-- the clear, logged or put on a topic.
CREATE TABLE IF NOT EXISTS ob_consents (
    consent_key        TEXT PRIMARY KEY,
    tenant_id          TEXT        NOT NULL,
    partner            TEXT        NOT NULL,
    customer_key       TEXT        NOT NULL,
    status             TEXT        NOT NULL,   -- awaiting_authorization | authorized | revoked | expired
    sealed             TEXT,
    access_expires_at  TIMESTAMPTZ,
    consent_expires_at TIMESTAMPTZ,
    provider_reference TEXT,
    redirect_uri       TEXT        NOT NULL,
    institution_id     TEXT,
    -- Where the next transaction fetch continues (the provider's cursor, or a date).
    cursor             TEXT,
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Transactions already given to products, by consent: a fetch emits only the new and the changed
-- (a digest of the normalized transaction), and withdrawals.
CREATE TABLE IF NOT EXISTS ob_transactions (
    consent_key    TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    digest         TEXT NOT NULL,
    PRIMARY KEY (consent_key, transaction_id)
);
