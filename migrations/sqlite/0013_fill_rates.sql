-- A segment's fill rates (per field, how many members have a value), as
-- of its refresh_no: computed once, not on every view of the segment.
-- Writing profiles empties the table (their values changed).
CREATE TABLE segment_fill_rates (
    segment_id BIGINT PRIMARY KEY REFERENCES segments (id) ON DELETE CASCADE,
    refresh_no BIGINT NOT NULL,
    rates TEXT NOT NULL
);
