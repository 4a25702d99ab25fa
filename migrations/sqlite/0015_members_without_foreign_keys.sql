-- PostgreSQL drops the foreign keys of segment members and changes in
-- this migration (their checks were more than half the cost of storing a
-- refresh). SQLite's check is an index lookup in the same process, and
-- dropping a key means rebuilding the table: SQLite keeps them.
SELECT 1;
