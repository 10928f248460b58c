-- identifiers.origin_person_id is an identifier's *home*: the person it belongs to when no merge is
-- in force (cdp_identity/graph.py). Rows written before this migration may hold wrong homes:
--   1. an identifier attached after a merge got the survivor as home, not its anchor's home;
--   2. an identifier cut off to a new person by a removal kept its first person as home.

-- 2. A home that is neither the holder nor merged into it is stale: the holder is the best guess.
UPDATE identifiers i SET origin_person_id = i.person_id
FROM persons h
WHERE h.workspace_id = i.workspace_id AND h.person_id = i.origin_person_id
  AND i.person_id IS NOT NULL AND i.origin_person_id <> i.person_id
  AND h.merged_into IS DISTINCT FROM i.person_id;

-- 1. Down every anchor chain (held by one person, anchors linked first), the anchor's home.
WITH RECURSIVE chain AS (
    SELECT i.workspace_id, i.id_type, i.id_value, i.person_id, i.first_seen_at,
           coalesce(i.origin_person_id, i.person_id) AS home
    FROM identifiers i
    WHERE i.person_id IS NOT NULL
      AND NOT EXISTS (
          SELECT 1 FROM identifiers a
          WHERE a.workspace_id = i.workspace_id AND a.id_type = i.anchor_type AND a.id_value = i.anchor_value
            AND a.person_id = i.person_id AND a.first_seen_at <= i.first_seen_at)
  UNION
    SELECT i.workspace_id, i.id_type, i.id_value, i.person_id, i.first_seen_at, c.home
    FROM chain c
    JOIN identifiers i
      ON i.workspace_id = c.workspace_id AND i.anchor_type = c.id_type AND i.anchor_value = c.id_value
     AND i.person_id = c.person_id AND i.first_seen_at >= c.first_seen_at
    WHERE (i.id_type, i.id_value) <> (c.id_type, c.id_value)
)
UPDATE identifiers i SET origin_person_id = c.home
FROM chain c
WHERE i.workspace_id = c.workspace_id AND i.id_type = c.id_type AND i.id_value = c.id_value
  AND i.origin_person_id IS DISTINCT FROM c.home;

COMMENT ON COLUMN identifiers.origin_person_id IS
    'home: the person this identifier belongs to when no merge is in force (its anchor''s home)';
