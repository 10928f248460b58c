-- Live membership (issue 5): rule versions, membership history, durable timers, merges,
-- RFM settings and thresholds, and what the projection needs from ProfileChanged.

ALTER TABLE segments
    ADD COLUMN version integer NOT NULL DEFAULT 1,
    -- '' for user rules; rfm, lifecycle or cross_sell for the built-ins.
    ADD COLUMN builtin text NOT NULL DEFAULT '';

-- Every rule a segment has had; a segment's current version is segments.version.
CREATE TABLE segment_versions (
    workspace_id text        NOT NULL,
    segment_id   text        NOT NULL,
    version      integer     NOT NULL,
    rule         text        NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, segment_id, version)
);

-- Bumped whenever a workspace's segments or RFM thresholds change: the live path reloads its
-- cached, parsed rules when it sees a new generation.
CREATE TABLE workspace_rules (
    workspace_id text   NOT NULL,
    generation   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id)
);

ALTER TABLE persons
    -- Names of the PII traits that are set (their values never reach this service).
    ADD COLUMN pii_traits text[] NOT NULL DEFAULT '{}',
    ADD COLUMN points_balance bigint;

-- Statuses are stored as announced; only 'completed' counts (the evaluators check it).
ALTER TABLE person_orders DROP CONSTRAINT person_orders_status_check;
-- The profile version that last wrote the order: an older announcement never overwrites it.
ALTER TABLE person_orders ADD COLUMN profile_version bigint NOT NULL DEFAULT 0;
CREATE INDEX person_orders_by_store ON person_orders (workspace_id, store_id);
CREATE INDEX person_orders_by_staff ON person_orders (workspace_id, staff_id);
CREATE INDEX order_items_by_product ON order_items (workspace_id, product_id);

ALTER TABLE memberships ALTER COLUMN since DROP DEFAULT;

-- Every entry and exit, in order.
CREATE TABLE membership_history (
    workspace_id       text        NOT NULL,
    id                 bigint      GENERATED ALWAYS AS IDENTITY,
    segment_id         text        NOT NULL,
    person_id          uuid        NOT NULL,
    entered            boolean     NOT NULL,
    reason             text        NOT NULL,
    segment_version    integer     NOT NULL,
    change_time        timestamptz NOT NULL,
    trigger_message_id text        NOT NULL DEFAULT '',
    PRIMARY KEY (workspace_id, id)
);
CREATE INDEX membership_history_by_segment ON membership_history (workspace_id, segment_id, id);
CREATE INDEX membership_history_by_person ON membership_history (workspace_id, person_id, id);

-- The next instant a person's membership of a windowed segment can change with no new data.
CREATE TABLE timers (
    workspace_id text        NOT NULL,
    segment_id   text        NOT NULL,
    person_id    uuid        NOT NULL,
    due_at       timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, segment_id, person_id)
);
CREATE INDEX timers_due ON timers (due_at);
CREATE INDEX timers_by_person ON timers (workspace_id, person_id);

-- Persons merged away, and the survivor they resolve to now.
CREATE TABLE merged_persons (
    workspace_id text        NOT NULL,
    person_id    uuid        NOT NULL,
    survivor_id  uuid        NOT NULL,
    merged_at    timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, person_id)
);

-- PII trait names seen in snapshots: rules may only ask whether they exist (values never travel).
CREATE TABLE pii_trait_names (
    workspace_id text NOT NULL,
    name         text NOT NULL,
    PRIMARY KEY (workspace_id, name)
);

-- The last applied version of each object's tags (ObjectTagsChanged.version).
CREATE TABLE object_versions (
    workspace_id text   NOT NULL,
    object_kind  text   NOT NULL,
    object_id    text   NOT NULL,
    version      bigint NOT NULL,
    PRIMARY KEY (workspace_id, object_kind, object_id)
);

CREATE TABLE rfm_settings (
    workspace_id text        NOT NULL,
    -- mean: R, F and M each against the workspace mean; quintile: scores 1-5 by quintile.
    method       text        NOT NULL CHECK (method IN ('mean', 'quintile')),
    -- quintile: a score of at least this is "high".
    high_score   integer     NOT NULL DEFAULT 4 CHECK (high_score BETWEEN 2 AND 5),
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id)
);

-- The thresholds of the last computation: one value each (mean) or four cut points (quintile).
-- Recency is in whole seconds since the last order.
CREATE TABLE rfm_thresholds (
    workspace_id    text        NOT NULL,
    method          text        NOT NULL,
    high_score      integer     NOT NULL,
    recency_seconds numeric[]   NOT NULL,
    frequency       numeric[]   NOT NULL,
    monetary        numeric[]   NOT NULL,
    customers       bigint      NOT NULL,
    computed_at     timestamptz NOT NULL,
    PRIMARY KEY (workspace_id)
);

-- ISO 8601 text to timestamptz, NULL for anything else. Up to 9 fractional digits (RFC 3339
-- from protobuf Timestamps), truncated to microseconds as Python's fromisoformat does.
CREATE OR REPLACE FUNCTION try_timestamptz(value text) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF value !~ '^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,9})?)?)?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])?$' THEN
        RETURN NULL;
    END IF;
    RETURN regexp_replace(value, '(\.[0-9]{6})[0-9]+', '\1')::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$;
