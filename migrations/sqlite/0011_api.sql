-- API tokens for the REST API (/api/v1). The secret is shown once, when
-- the token is created; only its SHA-256 is kept (it is 32 random bytes,
-- so a fast hash is enough). A token acts for the admin who created it,
-- with the role it was given (never more than that admin's role now).
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'contributor', 'viewer')),
    -- The first characters of the secret, to tell tokens apart in lists.
    prefix TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_by BIGINT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);

-- A run started through the API: by which token. Its `trigger` stays
-- 'manual' (the runs table's check allows no other value on SQLite);
-- readers show such runs as started by the API.
ALTER TABLE runs ADD COLUMN api_token_id BIGINT REFERENCES api_tokens (id);

-- Idempotency keys of run triggers: the same key from the same token
-- answers with the run the first request queued, for a day.
CREATE TABLE api_idempotency (
    token_id BIGINT NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    export_id BIGINT NOT NULL,
    mode TEXT NOT NULL,
    run_id BIGINT REFERENCES runs (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (token_id, key)
);

-- 429 answers (throttled or quota) per application and day, for metrics.
ALTER TABLE api_usage ADD COLUMN throttled BIGINT NOT NULL DEFAULT 0;
