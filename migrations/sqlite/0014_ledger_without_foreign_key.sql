-- PostgreSQL drops the ledger's foreign key in this migration (its check
-- was a third of the cost of a bulk ledger write). SQLite's check is an
-- index lookup in the same process, and dropping a key means rebuilding
-- the table: SQLite keeps it.
SELECT 1;
