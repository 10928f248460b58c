-- Wave 2 integration: splits move instances back, and the workspace time zone is profile's.

-- The person an instance was enrolled for, when a merge re-keyed it to a survivor: an unmerge
-- (PersonSplit) gives it back to the person that id resolves to again.
ALTER TABLE instances ADD COLUMN origin_person_id text;

-- The workspace time zone is ProfileSettings.time_zone (one source of truth, read over gRPC).
ALTER TABLE workspace_settings DROP COLUMN time_zone;
