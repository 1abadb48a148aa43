-- Settlement report files already reconciled (by content): the same file twice, under any name,
-- is reconciled once.
CREATE TABLE IF NOT EXISTS report_files (
    partner      TEXT        NOT NULL,
    sha256       TEXT        NOT NULL,
    name         TEXT        NOT NULL,
    lines        INT         NOT NULL,
    findings     INT         NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (partner, sha256)
);
