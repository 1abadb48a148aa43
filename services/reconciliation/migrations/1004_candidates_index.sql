-- Rule matching asks, per report line naming nothing of ours, for our settled payouts at the
-- partner in the line's currency up to its amount.
CREATE INDEX IF NOT EXISTS payouts_seen_candidates ON payouts_seen (partner, currency, amount_minor)
    WHERE status = 'settled';
