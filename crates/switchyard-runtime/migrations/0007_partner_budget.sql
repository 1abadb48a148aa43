-- One rate budget per partner, shared by every instance of a service: the time of the partner's
-- next free turn. Unlogged (no WAL): a crash of PostgreSQL empties it, which forgets only turns
-- already past.
CREATE UNLOGGED TABLE IF NOT EXISTS partner_budget (
    partner TEXT PRIMARY KEY,
    next_at TIMESTAMPTZ NOT NULL
);
