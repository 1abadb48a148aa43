-- Cards the mesh decides authorizations for: their state and spend controls, and the money
-- available to them (a funding balance; approvals hold it, reversals give it back, clearings settle
-- it). Card numbers never come here: the processor's token is the card's name.
CREATE TABLE IF NOT EXISTS card_accounts (
    card_token      TEXT PRIMARY KEY,
    tenant_id       TEXT        NOT NULL,
    state           TEXT        NOT NULL,   -- INACTIVE | ACTIVE | FROZEN | TERMINATED
    currency        TEXT        NOT NULL,
    controls        JSONB       NOT NULL DEFAULT '{}',
    available_minor BIGINT      NOT NULL DEFAULT 0,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every authorization asked of us, once per processor transaction: a processor that asks again
-- (its retry, our slow answer) gets the same decision and holds nothing twice.
CREATE TABLE IF NOT EXISTS card_authorizations (
    partner                 TEXT        NOT NULL,
    provider_transaction_id TEXT        NOT NULL,
    card_token              TEXT        NOT NULL,
    amount_minor            BIGINT      NOT NULL,
    currency                TEXT        NOT NULL,
    mcc                     TEXT        NOT NULL,
    merchant_country        TEXT,
    decision                TEXT        NOT NULL,   -- APPROVED | DECLINED
    decline_reason          TEXT,
    -- held (approved, money held) | cleared | reversed | declined
    status                  TEXT        NOT NULL,
    cleared_minor           BIGINT,
    decided_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (partner, provider_transaction_id)
);
CREATE INDEX IF NOT EXISTS card_authorizations_spend ON card_authorizations (card_token, decided_at)
    WHERE status IN ('held', 'cleared');
