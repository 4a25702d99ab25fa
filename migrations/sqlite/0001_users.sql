-- Users, roles, first-run setup, sign-in throttling and the audit log.
-- Timestamps are Unix milliseconds and flags INTEGER 0/1 (sqlx's Any driver
-- cannot decode SQLite's BOOLEAN); see engine/src/db.rs.

-- One row once the first administrator exists; its key makes the
-- first-run setup happen exactly once.
CREATE TABLE setup (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    completed_at BIGINT NOT NULL
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Stored trimmed and lower-cased.
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'contributor', 'viewer')),
    password_hash TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at BIGINT NOT NULL,
    created_by BIGINT REFERENCES users (id),
    last_sign_in_at BIGINT,
    CONSTRAINT users_email_key UNIQUE (email)
);

-- Failed sign-ins per (normalised) email, known or not, for the lockout.
CREATE TABLE sign_in_failures (
    email TEXT PRIMARY KEY,
    failures BIGINT NOT NULL,
    window_started_at BIGINT NOT NULL,
    locked_until BIGINT
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor_id BIGINT REFERENCES users (id),
    -- Kept as text so the entry stays readable whatever happens to the user.
    actor_email TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
