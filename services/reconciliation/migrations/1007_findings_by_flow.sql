-- A payout's outcome closes the in-doubt finding about it: found by the flow, not by a scan.
CREATE INDEX IF NOT EXISTS findings_in_doubt ON findings (internal_reference)
    WHERE kind = 'in_doubt_resolved' AND state <> 'resolved';
