-- The payee's account, last four characters only, as each payout was asked for (from
-- payouts.commands.v1): what rule matching compares with a report line's payee.
CREATE TABLE IF NOT EXISTS counterparties (
    flow_id     TEXT PRIMARY KEY,
    last_four   TEXT        NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Which settlement report line accounts for which payout of ours, and by which rule (reference,
-- split, amount_date, counterparty, batch). A payout matched once is no candidate for rule
-- matching again.
CREATE TABLE IF NOT EXISTS line_matches (
    partner      TEXT        NOT NULL,
    file_sha256  TEXT        NOT NULL,
    line         INT         NOT NULL,
    flow_id      TEXT        NOT NULL,
    rule         TEXT        NOT NULL,
    matched_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (partner, file_sha256, line, flow_id)
);
CREATE INDEX IF NOT EXISTS line_matches_flow ON line_matches (flow_id);
