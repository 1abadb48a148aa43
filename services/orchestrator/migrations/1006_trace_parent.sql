-- The W3C trace context of each flow's start: work a partner's webhook causes later (a new trace,
-- begun at the webhook normalizer) continues the flow's own trace, linked to the webhook's.
ALTER TABLE onboarding_flows ADD COLUMN IF NOT EXISTS trace_parent TEXT;
ALTER TABLE payouts ADD COLUMN IF NOT EXISTS trace_parent TEXT;
