-- Segments and their stored members. A rule segment's members are
-- re-evaluated on refresh; each refresh's entered/left changes are kept for
-- incremental exports.
CREATE TABLE segments (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL,
    description TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('static', 'rule')),
    -- The rule as JSON ({"match": "all"|"any", "conditions": [...]}).
    rule TEXT,
    member_count BIGINT NOT NULL,
    refresh_no BIGINT NOT NULL,
    refreshed_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT segments_name_key UNIQUE (name_key)
);

-- The primary key is the index an export pages through, in key order.
CREATE TABLE segment_members (
    segment_id BIGINT NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    profile_id TEXT NOT NULL,
    PRIMARY KEY (segment_id, profile_id)
);

CREATE TABLE segment_changes (
    segment_id BIGINT NOT NULL REFERENCES segments (id) ON DELETE CASCADE,
    refresh_no BIGINT NOT NULL,
    change TEXT NOT NULL CHECK (change IN ('entered', 'left')),
    profile_id TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX segment_changes_by_refresh ON segment_changes (segment_id, refresh_no);
