-- Payouts whose outcome is not known (in doubt, or left to an operator): the orchestrator counts
-- them and their age every few seconds for the in-doubt alert, without scanning every payout.
CREATE INDEX IF NOT EXISTS payouts_unsettled ON payouts (created_at)
    WHERE state_name IN ('in_doubt', 'manual_repair');
