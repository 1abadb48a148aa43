-- The attempt ledger was replaced by the effect ledger (0003); nothing reads or writes it.
DROP TABLE IF EXISTS provider_attempts;
