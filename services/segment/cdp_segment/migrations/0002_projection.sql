-- The projection: what audience rules read about people, fed by profile changes and identity
-- merges (never by reading another service's schema). Rules compile to SQL over these tables.

CREATE TABLE persons (
    workspace_id    text        NOT NULL,
    person_id       uuid        NOT NULL,
    traits          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    computed        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    lifecycle_stage text,
    tier            text,
    rfm_group       text,
    tags            text[]      NOT NULL DEFAULT '{}',
    consent         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- The profile version last applied: older announcements are ignored.
    profile_version bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, person_id)
);

CREATE TABLE person_events (
    workspace_id text        NOT NULL,
    message_id   text        NOT NULL,
    person_id    uuid        NOT NULL,
    name         text        NOT NULL,
    properties   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    event_time   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, message_id)
);
CREATE INDEX person_events_by_person ON person_events (workspace_id, person_id, name, event_time);

CREATE TABLE person_orders (
    workspace_id text        NOT NULL,
    order_id     text        NOT NULL,
    person_id    uuid        NOT NULL,
    status       text        NOT NULL DEFAULT 'completed' CHECK (status IN ('completed', 'refunded', 'cancelled')),
    total_minor  bigint      NOT NULL,
    currency     text        NOT NULL DEFAULT 'CNY',
    store_id     text        NOT NULL DEFAULT '',
    staff_id     text        NOT NULL DEFAULT '',
    order_time   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, order_id)
);
CREATE INDEX person_orders_by_person ON person_orders (workspace_id, person_id, order_time);

CREATE TABLE order_items (
    workspace_id text    NOT NULL,
    order_id     text    NOT NULL,
    line_no      integer NOT NULL,
    sku          text    NOT NULL DEFAULT '',
    category     text    NOT NULL DEFAULT '',
    product_id   text    NOT NULL DEFAULT '',
    PRIMARY KEY (workspace_id, order_id, line_no)
);

-- Tags of products, stores and sales staff (rules like "bought at a store tagged X").
CREATE TABLE object_tags (
    workspace_id text NOT NULL,
    object_kind  text NOT NULL CHECK (object_kind IN ('product', 'store', 'staff')),
    object_id    text NOT NULL,
    tag          text NOT NULL,
    PRIMARY KEY (workspace_id, object_kind, object_id, tag)
);

CREATE TABLE memberships (
    workspace_id text        NOT NULL,
    segment_id   text        NOT NULL,
    person_id    uuid        NOT NULL,
    since        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, segment_id, person_id)
);
CREATE INDEX memberships_by_person ON memberships (workspace_id, person_id);

-- ISO 8601 text to timestamptz, NULL for anything else (the rule semantics: "not a time").
-- The accepted shape is the one cdp_segment.rules.memory.ISO_TIME accepts.
CREATE FUNCTION try_timestamptz(value text) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF value !~ '^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?)?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])?$' THEN
        RETURN NULL;
    END IF;
    RETURN value::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$;
