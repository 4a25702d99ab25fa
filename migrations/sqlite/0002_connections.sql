-- Connections to Constant Contact accounts. Tokens are stored encrypted
-- (ChaCha20-Poly1305, engine/src/crypto.rs), never in clear.
CREATE TABLE connections (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    display_name TEXT NOT NULL,
    -- The lower-cased name: names are unique regardless of case.
    name_key TEXT NOT NULL,
    usable_by TEXT NOT NULL CHECK (usable_by IN ('admins', 'admins_and_contributors')),
    status TEXT NOT NULL CHECK (status IN ('authorized', 'needs_reauth', 'error')),
    status_reason TEXT,
    -- Who agreed to the privacy and compliance statement, and when.
    consent_by BIGINT REFERENCES users (id),
    consent_at BIGINT NOT NULL,
    export_user_id BIGINT REFERENCES users (id),
    access_token_enc TEXT NOT NULL,
    refresh_token_enc TEXT,
    token_expires_at BIGINT NOT NULL,
    scopes TEXT NOT NULL,
    authorized_at BIGINT,
    authorized_by BIGINT REFERENCES users (id),
    created_at BIGINT NOT NULL,
    created_by BIGINT REFERENCES users (id),
    updated_at BIGINT NOT NULL,
    CONSTRAINT connections_name_key UNIQUE (name_key)
);
