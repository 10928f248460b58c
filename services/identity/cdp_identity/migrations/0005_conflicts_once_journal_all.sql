-- Conflicts are recorded once per (person, identifier, kind), not once per message: a shopper whose
-- phone sits on another account no longer adds a row (and an event) on every event. They are kept
-- CDP_IDENTITY_CONFLICT_DAYS; one that still happens after that is recorded (and announced) again.
ALTER TABLE conflicts DROP CONSTRAINT conflicts_workspace_id_message_id_id_type_id_value_key;
DELETE FROM conflicts c
USING conflicts d
WHERE d.workspace_id = c.workspace_id AND d.kind = c.kind AND d.id_type = c.id_type AND d.id_value = c.id_value
  AND d.person_id IS NOT DISTINCT FROM c.person_id
  AND (d.created_at, d.conflict_id) < (c.created_at, c.conflict_id);
CREATE UNIQUE INDEX conflicts_once ON conflicts
    (workspace_id, kind, id_type, id_value, coalesce(person_id, '00000000-0000-0000-0000-000000000000'::uuid));
CREATE INDEX conflicts_by_age ON conflicts (created_at);

-- The journal holds every resolution, also events that resolved to nobody (only junk, blocked or
-- removed identifiers): replays of them change nothing either, and dry runs see them.
ALTER TABLE journal ALTER COLUMN person_id DROP NOT NULL;
