-- Alerts: who is told, and how, when a run fails or skips too much, a
-- connection needs signing in again, or the daily quota runs out.

-- When to alert and whom: export_id 0 is the default (Admin > System);
-- an export's own row replaces it for that export's runs.
CREATE TABLE alert_rules (
    export_id BIGINT PRIMARY KEY,
    on_failure INTEGER NOT NULL CHECK (on_failure IN (0, 1)),
    on_partial INTEGER NOT NULL CHECK (on_partial IN (0, 1)),
    -- A partially succeeded run alerts when more than this percent of the
    -- profiles it read were skipped or rejected.
    partial_threshold_pct BIGINT NOT NULL,
    on_reauth INTEGER NOT NULL CHECK (on_reauth IN (0, 1)),
    on_quota INTEGER NOT NULL CHECK (on_quota IN (0, 1)),
    -- Comma-separated addresses; empty: no email.
    emails TEXT NOT NULL,
    -- Empty: no webhook.
    webhook_url TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- How alerts go out (one row, id 1): the SMTP server, and the secret
-- webhook bodies are signed with (sealed like tokens).
CREATE TABLE alert_channels (
    id BIGINT PRIMARY KEY,
    smtp_host TEXT NOT NULL,
    smtp_port BIGINT NOT NULL,
    -- 'none', 'starttls' or 'tls'.
    smtp_tls TEXT NOT NULL,
    smtp_username TEXT NOT NULL,
    smtp_password_enc TEXT,
    smtp_from TEXT NOT NULL,
    webhook_secret_enc TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Every alert raised, once per event (the key makes raising it again,
-- from any process, a no-op).
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    export_id BIGINT,
    run_id BIGINT,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Each alert's delivery to each channel, retried until it goes through
-- or runs out of attempts.
CREATE TABLE alert_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id BIGINT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
    target TEXT NOT NULL,
    -- 'pending', 'sent' or 'failed' (gave up).
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at BIGINT NOT NULL,
    -- A process sending it holds it until then.
    claimed_until BIGINT,
    sent_at BIGINT
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (status, next_attempt_at);
CREATE INDEX alerts_created ON alerts (created_at);
CREATE INDEX alerts_run ON alerts (run_id);
