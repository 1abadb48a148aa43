-- The runtime's tables, present in every service's database. Service migrations use versions
-- >= 1000 so both migration sets share one history table.

-- Events waiting to be published. A row is written in the same transaction as the state change that
-- produced it; the relay publishes unpublished rows in id order and then sets published_at.
CREATE TABLE IF NOT EXISTS outbox (
    id           BIGSERIAL PRIMARY KEY,
    topic        TEXT        NOT NULL,
    msg_key      TEXT        NOT NULL,
    payload      BYTEA       NOT NULL,   -- Confluent wire format, ready to send
    headers      JSONB       NOT NULL DEFAULT '{}'::jsonb,
    event_id     UUID        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    published_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Wake the relay as soon as a transaction that wrote outbox rows commits.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('switchyard_outbox', '');
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Messages already applied, per consumer: the first statement of every handling transaction inserts
-- here, so a redelivered message finds its row and is skipped.
CREATE TABLE IF NOT EXISTS inbox (
    consumer     TEXT        NOT NULL,
    event_id     UUID        NOT NULL,
    topic        TEXT        NOT NULL,
    kafka_partition INT      NOT NULL,
    kafka_offset BIGINT      NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX IF NOT EXISTS inbox_processed_at ON inbox (processed_at);
