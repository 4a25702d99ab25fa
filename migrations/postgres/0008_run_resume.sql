-- Runs that stop on a cause that passes (Constant Contact unreachable or
-- failing for a while, the daily quota) go back to the queue and are
-- resumed from their checkpoint at `not_before`; `resumes` counts how
-- often, so a cause that does not pass ends the run in the end.
ALTER TABLE runs ADD COLUMN not_before BIGINT;
ALTER TABLE runs ADD COLUMN resumes BIGINT NOT NULL DEFAULT 0;
