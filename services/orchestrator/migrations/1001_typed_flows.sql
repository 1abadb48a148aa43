-- The typed flow engine: each waiting state carries its live case; timers ask the partner before
-- anything is decided.
ALTER TABLE onboarding_flows ADD COLUMN IF NOT EXISTS aml_reference TEXT;
ALTER TABLE onboarding_flows ADD COLUMN IF NOT EXISTS status_checks INT NOT NULL DEFAULT 0;
ALTER TABLE onboarding_flows ADD COLUMN IF NOT EXISTS overdue BOOLEAN NOT NULL DEFAULT false;
