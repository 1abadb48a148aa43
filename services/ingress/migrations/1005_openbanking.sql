-- Open-banking consents and payments as products see them (built from openbanking.outcomes.v1),
-- the accounts last fetched under each consent and their transactions (personal data: read only
-- through the API, never logged). No provider token is ever here.
CREATE TABLE IF NOT EXISTS ob_consents (
    tenant_id          TEXT        NOT NULL,
    consent_id         TEXT        NOT NULL,
    customer_id        TEXT        NOT NULL,
    status             TEXT        NOT NULL,
    partner            TEXT,
    authorization_url  TEXT,
    consent_expires_at TIMESTAMPTZ,
    last_operation     TEXT,
    failure_code       TEXT,
    request_hash       TEXT        NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, consent_id)
);

CREATE TABLE IF NOT EXISTS ob_payments (
    tenant_id          TEXT        NOT NULL,
    payment_id         TEXT        NOT NULL,
    customer_id        TEXT        NOT NULL,
    status             TEXT        NOT NULL,
    amount_minor       BIGINT      NOT NULL,
    currency           TEXT        NOT NULL,
    beneficiary        TEXT        NOT NULL,   -- the account's last four characters
    partner            TEXT,
    provider_reference TEXT,
    authorization_url  TEXT,
    failure_code       TEXT,
    request_hash       TEXT        NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, payment_id)
);

CREATE TABLE IF NOT EXISTS ob_accounts (
    tenant_id       TEXT   NOT NULL,
    consent_id      TEXT   NOT NULL,
    account_id      TEXT   NOT NULL,
    name            TEXT   NOT NULL,
    kind            TEXT   NOT NULL,
    currency        TEXT   NOT NULL,
    number_last4    TEXT,
    current_minor   BIGINT,
    available_minor BIGINT,
    fetched_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, consent_id, account_id)
);

CREATE TABLE IF NOT EXISTS ob_transactions (
    tenant_id      TEXT   NOT NULL,
    consent_id     TEXT   NOT NULL,
    transaction_id TEXT   NOT NULL,
    account_id     TEXT   NOT NULL,
    amount_minor   BIGINT NOT NULL,
    currency       TEXT   NOT NULL,
    status         TEXT   NOT NULL,
    booking_date   DATE,
    value_date     DATE,
    description    TEXT   NOT NULL,
    PRIMARY KEY (tenant_id, consent_id, transaction_id)
);
