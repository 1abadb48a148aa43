-- Shadow mode compares: the shadow vendor's case is known (its webhooks reach it), its final verdict
-- is recorded, and compared with the live vendor's verdict of the same step.
ALTER TABLE provider_refs ADD COLUMN IF NOT EXISTS shadow BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE shadow_results ADD COLUMN IF NOT EXISTS provider_reference TEXT;
ALTER TABLE shadow_results ADD COLUMN IF NOT EXISTS verdict TEXT;
ALTER TABLE shadow_results ADD COLUMN IF NOT EXISTS live_verdict TEXT;
ALTER TABLE shadow_results ADD COLUMN IF NOT EXISTS agrees BOOLEAN;
ALTER TABLE shadow_results ADD COLUMN IF NOT EXISTS verdict_at TIMESTAMPTZ;
ALTER TABLE onboarding_flows ADD COLUMN IF NOT EXISTS kyc_verdict TEXT;
ALTER TABLE onboarding_flows ADD COLUMN IF NOT EXISTS aml_verdict TEXT;
CREATE INDEX IF NOT EXISTS shadow_results_flow ON shadow_results (flow_id, domain);
