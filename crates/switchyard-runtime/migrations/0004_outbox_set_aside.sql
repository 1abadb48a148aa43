-- A row Kafka refuses every time (too large, a topic that does not exist) is set aside after
-- outbox.max_attempts rounds in which other rows were delivered, instead of holding the relay.
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS attempts INT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS last_error TEXT;
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS set_aside_at TIMESTAMPTZ;
DROP INDEX IF EXISTS outbox_unpublished;
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (id) WHERE published_at IS NULL AND set_aside_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_set_aside ON outbox (id) WHERE set_aside_at IS NOT NULL;
