-- The relay is woken after the commit (in memory, or by a NOTIFY sent in a transaction of its own),
-- never by a NOTIFY inside the writing transaction: Postgres serialises the commits of every
-- transaction that notifies, WAL flush included, across the cluster.
DROP TRIGGER IF EXISTS outbox_notify ON outbox;
DROP FUNCTION IF EXISTS outbox_notify();
