-- The ledger's rows are written in bulk (a full export writes one per
-- contact), and a foreign key checks each inserted row against `exports`
-- with a locking read: a third of the cost of a ledger write. Exports are
-- never deleted (removing one marks it removed), so the key guarded
-- nothing that happens.
ALTER TABLE export_ledger DROP CONSTRAINT IF EXISTS export_ledger_export_id_fkey;
