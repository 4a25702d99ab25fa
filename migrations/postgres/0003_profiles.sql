-- Unified customer profiles: a stable id and a JSON object of text
-- attributes (field name -> value). Rules are evaluated in Rust, so both
-- backends give the same members.
CREATE TABLE profiles (
    id TEXT PRIMARY KEY,
    attributes TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- The field catalogue, recomputed after each import.
CREATE TABLE profile_fields (
    name TEXT PRIMARY KEY,
    -- number, date, email, boolean or text (inferred from the values).
    kind TEXT NOT NULL,
    -- Profiles with a non-empty value.
    filled BIGINT NOT NULL
);
