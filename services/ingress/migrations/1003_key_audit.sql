-- Who created or revoked a key through the admin API (an operator's name, as given to yardctl).
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS created_by TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS revoked_by TEXT;
