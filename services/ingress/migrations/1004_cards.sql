-- Cards as products see them (built from cards.outcomes.v1), and their transactions. No card number
-- is ever here: the processor's token and the last four digits.
CREATE TABLE IF NOT EXISTS cards (
    tenant_id     TEXT        NOT NULL,
    card_id       TEXT        NOT NULL,
    flow_id       TEXT        NOT NULL,
    cardholder_id TEXT        NOT NULL,
    status        TEXT        NOT NULL,   -- requested | inactive | active | frozen | terminated | failed
    form_factor   TEXT        NOT NULL,
    product       TEXT,
    partner       TEXT,
    card_token    TEXT,
    last4         TEXT,
    -- The last operation's failure (the card kept its state).
    last_operation TEXT,
    failure_code  TEXT,
    request_hash  TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, card_id)
);

CREATE TABLE IF NOT EXISTS card_transactions (
    tenant_id               TEXT        NOT NULL,
    card_id                 TEXT        NOT NULL,
    partner                 TEXT        NOT NULL,
    provider_transaction_id TEXT        NOT NULL,
    kind                    TEXT        NOT NULL,   -- authorization | clearing | reversal
    amount_minor            BIGINT      NOT NULL,
    currency                TEXT        NOT NULL,
    merchant                TEXT,
    mcc                     TEXT,
    approved                BOOLEAN,
    decline_reason          TEXT,
    latency_ms              BIGINT,
    fallback                BOOLEAN     NOT NULL DEFAULT false,
    at                      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (partner, provider_transaction_id, kind)
);
CREATE INDEX IF NOT EXISTS card_transactions_card ON card_transactions (tenant_id, card_id, at DESC);
