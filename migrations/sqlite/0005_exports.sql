-- Exports (destinations), their runs, and what each export last sent.

CREATE TABLE exports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    -- NULL once the connection is removed (the export is then disabled).
    connection_id BIGINT REFERENCES connections (id) ON DELETE SET NULL,
    list_id TEXT NOT NULL,
    list_name TEXT NOT NULL,
    -- JSON: [{"source": "<profile field>", "target": "email" | "first_name" | "cf:<name>" ...}]
    mapping TEXT NOT NULL,
    on_schedule INTEGER NOT NULL CHECK (on_schedule IN (0, 1)),
    remove_left INTEGER NOT NULL CHECK (remove_left IN (0, 1)),
    -- The circuit breaker: a run stops before removing more than this
    -- percentage of the list.
    removal_limit_pct BIGINT NOT NULL,
    enabled INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    disabled_reason TEXT,
    owner_id BIGINT REFERENCES users (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- Set when an admin removes the export: it is kept for its run history
    -- but never runs again.
    removed_at BIGINT,
    removed_by BIGINT REFERENCES users (id)
);
CREATE UNIQUE INDEX exports_name_key ON exports (name_key) WHERE removed_at IS NULL;

CREATE TABLE export_segments (
    export_id BIGINT NOT NULL REFERENCES exports (id) ON DELETE CASCADE,
    segment_id BIGINT NOT NULL REFERENCES segments (id),
    PRIMARY KEY (export_id, segment_id)
);

-- queued -> running -> succeeded | partially_succeeded | failed | cancelled
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    export_id BIGINT NOT NULL REFERENCES exports (id),
    trigger TEXT NOT NULL CHECK (trigger IN ('manual', 'schedule', 'cli')),
    mode TEXT NOT NULL CHECK (mode IN ('incremental', 'full', 'dry_run')),
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'partially_succeeded', 'failed', 'cancelled')),
    message TEXT,
    requested_by BIGINT REFERENCES users (id),
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    worker TEXT,
    lease_until BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    queued_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    -- planning, sending, removing, finished
    phase TEXT,
    -- Contacts the plan will look at (profiles in the segments).
    total BIGINT,
    -- JSON counters (engine::runs::Counts); the plan of a dry run.
    counts TEXT NOT NULL,
    -- Every profile up to this key is settled (sent, skipped or failed).
    checkpoint TEXT,
    -- The list and mapping this run sends with (a change forces a full send).
    config_hash TEXT
);
-- At most one active run per export, whatever the number of workers.
CREATE UNIQUE INDEX runs_one_active ON runs (export_id) WHERE status IN ('queued', 'running');
CREATE INDEX runs_by_export ON runs (export_id, id);
CREATE INDEX runs_by_status ON runs (status, id);

-- One row per import batch: written before it is sent, then its activity,
-- then its outcome. A resumed run waits for a sent batch instead of
-- sending it again.
CREATE TABLE run_batches (
    run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('import', 'removal')),
    first_key TEXT NOT NULL,
    last_key TEXT NOT NULL,
    size BIGINT NOT NULL,
    activity_id TEXT,
    state TEXT NOT NULL CHECK (state IN ('sending', 'sent', 'done', 'failed')),
    outcome TEXT,
    at BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

-- Per-contact problems of a run (skips and rejections), downloadable.
CREATE TABLE run_errors (
    -- Increasing: a run's errors read back in the order they were found.
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    profile_id TEXT NOT NULL,
    email TEXT NOT NULL,
    kind TEXT NOT NULL,
    field TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX run_errors_by_run ON run_errors (run_id, id);

-- What an export last sent for each profile: a hash of the mapped fields,
-- so an unchanged contact is not sent again.
CREATE TABLE export_ledger (
    export_id BIGINT NOT NULL REFERENCES exports (id) ON DELETE CASCADE,
    profile_id TEXT NOT NULL,
    email TEXT NOT NULL,
    -- The list it was sent to: removals only touch this list.
    list_id TEXT NOT NULL,
    hash TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    run_id BIGINT NOT NULL,
    sent_at BIGINT NOT NULL,
    PRIMARY KEY (export_id, profile_id)
) WITHOUT ROWID; -- rows live in the key's B-tree: one insert, not two

-- Contacts Constant Contact reports as unsubscribed, per connection: never
-- sent again (an import must not look like consent).
CREATE TABLE suppressions (
    connection_id BIGINT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (connection_id, email)
);
