-- Announcing a recompute's predictions by position instead of unmarking rows (issue 8, 1M in
-- under 60 s): `predictions.announce` is now written once, when the row is inserted, and never
-- updated. The model's marked rows are split into lanes of person ids, one announcing
-- transaction at a time per lane (the lane row is locked); a lane's `after` moves on with every
-- batch, in the batch's transaction. A marked row is still to be announced while its lane
-- exists and the row lies after `after`; a lane whose rows are all announced is deleted.
-- Unmarking a million rows after a first fit wrote a million new row versions and index
-- entries; moving a cursor writes one row per batch.
CREATE TABLE prediction_announce_lanes (
    workspace_id text     NOT NULL,
    model_id     bigint   NOT NULL,
    lane         smallint NOT NULL,
    -- Rows with after < person_id <= through (the nil and the all-ones UUID: no bound).
    after        uuid     NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000',
    through      uuid     NOT NULL DEFAULT 'ffffffff-ffff-ffff-ffff-ffffffffffff',
    PRIMARY KEY (workspace_id, model_id, lane)
);
