-- A segment's refresh writes its members and its changes in bulk (one row
-- each per profile that entered or left), and a foreign key checks each
-- inserted row against `segments`: more than half of the cost of a
-- refresh (300,000 demo profiles' segments took 26 s to store, 11 s
-- without the keys). Segments are never deleted, so the keys guarded
-- nothing that happens.
ALTER TABLE segment_members DROP CONSTRAINT IF EXISTS segment_members_segment_id_fkey;
ALTER TABLE segment_changes DROP CONSTRAINT IF EXISTS segment_changes_segment_id_fkey;
