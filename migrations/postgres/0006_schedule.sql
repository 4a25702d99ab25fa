-- The scheduled refresh: one row. `config` is the schedule as JSON
-- (engine::schedule::Schedule); `last_slot` is the instant up to which
-- slots have been handled, compared-and-set so one process fires each.
CREATE TABLE schedule (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    config TEXT NOT NULL,
    last_slot BIGINT NOT NULL,
    last_refresh_at BIGINT,
    updated_at BIGINT NOT NULL
);
