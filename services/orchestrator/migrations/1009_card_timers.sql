-- A card's next read at its processor, after a read that failed (the processor's own change was
-- reported but could not be read then). One per card.
CREATE TABLE IF NOT EXISTS card_timers (
    flow_id TEXT PRIMARY KEY,
    due_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS card_timers_due ON card_timers (due_at);
