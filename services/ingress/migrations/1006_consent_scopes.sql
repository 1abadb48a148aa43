-- What the customer consented to, in the provider's words.
ALTER TABLE ob_consents ADD COLUMN IF NOT EXISTS scopes TEXT[] NOT NULL DEFAULT '{}';
