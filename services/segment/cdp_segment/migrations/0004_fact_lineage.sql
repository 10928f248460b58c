-- Orders across merges and splits (cdp_segment.facts): whose version sequence profile_version
-- counts in (writer), and the writer before the last move while the new owner has not written the
-- order yet (prior_writer, prior_version): its late announcements may still update the order.
ALTER TABLE person_orders
    ADD COLUMN writer uuid,
    ADD COLUMN prior_writer uuid,
    ADD COLUMN prior_version bigint NOT NULL DEFAULT 0;
UPDATE person_orders SET writer = person_id;
ALTER TABLE person_orders ALTER COLUMN writer SET NOT NULL;

-- Facts a split moved before this service saw them (the original person's announcement of them
-- is still on its way): when one arrives, it goes to to_person (or its survivor).
CREATE TABLE pending_moves (
    workspace_id text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('event', 'order')),
    fact_id      text        NOT NULL,
    to_person    uuid        NOT NULL,
    version      bigint      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, kind, fact_id)
);
CREATE INDEX pending_moves_by_person ON pending_moves (workspace_id, to_person);
