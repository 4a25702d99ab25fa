-- Security hardening (issue 13).

-- Sign-in attempts per (normalised email, client address). An attempt is
-- counted before its password is checked, in one statement, so parallel
-- attempts cannot all slip under the limit; a lockout holds only for the
-- address that earned it, so nobody can lock another person out.
DROP TABLE sign_in_failures;
CREATE TABLE sign_in_attempts (
    email TEXT NOT NULL,
    client TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    window_started_at BIGINT NOT NULL,
    PRIMARY KEY (email, client)
);

-- Sessions signed in before this moment are over (set on deactivation),
-- even if a request in flight wrote its session back after it was deleted.
ALTER TABLE users ADD COLUMN sessions_valid_after BIGINT NOT NULL DEFAULT 0;

-- Which user each signed-in session belongs to, so deactivation can
-- delete them (the session store keeps its data opaque).
CREATE TABLE user_sessions (
    session_id TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX user_sessions_user ON user_sessions (user_id);

-- A static segment's uploaded ids, staged on their way in: an upload of
-- millions of ids is written here in batches and merged with the stored
-- members page by page, never held in memory. Rows live for one import.
CREATE TABLE segment_import_ids (
    import_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    PRIMARY KEY (import_id, profile_id)
);
