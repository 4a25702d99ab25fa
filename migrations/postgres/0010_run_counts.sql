-- A run's counts as of its checkpoint (the stream's counts up to the
-- checkpoint, Constant Contact's outcomes up to the last settled batch):
-- what an attempt that takes the run over starts from. `counts` stays the
-- live figure the run page shows, which runs ahead of the checkpoint.
ALTER TABLE runs ADD COLUMN resume_counts TEXT;

-- The run that first sent each contact of an export. A resumed run that
-- finds a contact its own earlier attempt sent counts it as new or
-- changed, as that attempt did, rather than as unchanged.
ALTER TABLE export_ledger ADD COLUMN added_by_run BIGINT;

-- The contacts of imports Constant Contact accepted that a run could not
-- see through: it stopped, and could not ask about them (its sign-in was
-- revoked, say). The export's next run asks about each import first and
-- records the contacts of those that went through in the ledger, so it
-- does not send them again.
CREATE TABLE unsettled_imports (
    export_id BIGINT NOT NULL REFERENCES exports (id) ON DELETE CASCADE,
    run_id BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    activity_id TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    email TEXT NOT NULL,
    list_id TEXT NOT NULL,
    hash TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    PRIMARY KEY (export_id, run_id, seq, profile_id)
);
