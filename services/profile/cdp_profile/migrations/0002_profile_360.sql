-- The 360° profile (issue 4): events partitioned by month with a de-duplication table, orders,
-- points ledger, durable timers, settings, objects, merged-person aliases.

-- Events ------------------------------------------------------------------------------------
-- A unique constraint on a partitioned table must include the partition key (event_time), so it
-- could not say "one row per message id". The de-duplication lives in event_keys instead: one
-- small row per (workspace, message id), inserted first with ON CONFLICT DO NOTHING; only the
-- message ids it took are inserted into events. It also tells where an event lives (person and
-- event time, i.e. its partition).
CREATE TABLE event_keys (
    workspace_id text        NOT NULL,
    message_id   text        NOT NULL,
    person_id    uuid        NOT NULL,
    event_time   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, message_id)
);

ALTER TABLE events RENAME TO events_v1;
ALTER INDEX events_by_person RENAME TO events_v1_by_person;

-- Monthly partitions events_pYYYYMM are created ahead of time by the service and on demand for
-- older or later months (no default partition: a default partition holding rows of a month
-- would stop that month's partition from being created later).
CREATE TABLE events (
    workspace_id text        NOT NULL,
    message_id   text        NOT NULL,
    person_id    uuid        NOT NULL,
    type         text        NOT NULL,
    event        text        NOT NULL DEFAULT '',
    -- properties and context as sent: serialized google.protobuf.Struct (written and read back
    -- without a JSON round trip; no service queries inside them), PII-named properties sealed in pii.
    properties   bytea       NOT NULL DEFAULT ''::bytea,
    context      bytea       NOT NULL DEFAULT ''::bytea,
    -- Rows stored before this migration: {"properties": {...}, "context": {...}}.
    legacy       jsonb,
    -- Identify calls and API trait updates: {"set": {...}, "set_once": {...}, "unset": [...]}
    -- without PII traits; the PII part sealed in pii (AES-GCM, cdpkit.pii).
    traits       jsonb,
    pii          bytea,
    -- Keyed hashes of the identifiers the event was resolved from (splits move events by them).
    identifiers  text[]      NOT NULL DEFAULT '{}',
    channel      text        NOT NULL DEFAULT '',
    store_id     text        NOT NULL DEFAULT '',
    staff_id     text        NOT NULL DEFAULT '',
    source       text        NOT NULL DEFAULT '',
    event_time   timestamptz NOT NULL,
    received_at  timestamptz NOT NULL
) PARTITION BY RANGE (event_time);
CREATE INDEX events_by_person ON events (workspace_id, person_id, event_time DESC, message_id DESC);

DO $$
DECLARE
    month date;
BEGIN
    FOR month IN SELECT DISTINCT date_trunc('month', event_time AT TIME ZONE 'UTC')::date FROM events_v1 LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
            'events_p' || to_char(month, 'YYYYMM'),
            (month::timestamp AT TIME ZONE 'UTC'),
            ((month + interval '1 month')::timestamp AT TIME ZONE 'UTC')
        );
    END LOOP;
END $$;

INSERT INTO event_keys (workspace_id, message_id, person_id, event_time)
SELECT workspace_id, message_id, person_id, event_time FROM events_v1;
INSERT INTO events (workspace_id, message_id, person_id, type, event, legacy, event_time, received_at)
SELECT workspace_id, message_id, person_id, type, event, jsonb_build_object('properties', properties, 'context', context),
       event_time, received_at
FROM events_v1;
DROP TABLE events_v1;

-- Profiles ----------------------------------------------------------------------------------
-- traits: non-PII traits only; pii: the PII traits as one sealed JSON object (context
-- "<workspace>/profile/<person>"); trait_meta: per trait [event time, source, unset].
ALTER TABLE profiles
    ADD COLUMN pii               bytea,
    ADD COLUMN trait_meta        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN computed          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN stats             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN lifecycle_stage   text        NOT NULL DEFAULT 'prospect',
    ADD COLUMN lifecycle_at      timestamptz,
    ADD COLUMN tier              text        NOT NULL DEFAULT '',
    ADD COLUMN tier_at           timestamptz,
    ADD COLUMN tags              jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN consent           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN points_lots       jsonb       NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN points_balance    bigint      NOT NULL DEFAULT 0,
    ADD COLUMN merged_person_ids uuid[]      NOT NULL DEFAULT '{}';

-- A merged-away person id keeps answering: events resolved to it later are re-keyed to its
-- survivor, GetProfile of it answers with the survivor.
CREATE TABLE person_aliases (
    workspace_id text        NOT NULL,
    person_id    uuid        NOT NULL,
    survivor_id  uuid        NOT NULL,
    -- The merged profile's last version: if a split brings the id back, its versions go on from there.
    last_version bigint      NOT NULL DEFAULT 0,
    merged_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, person_id)
);
CREATE INDEX person_aliases_by_survivor ON person_aliases (workspace_id, survivor_id);

-- Orders ------------------------------------------------------------------------------------
CREATE TABLE orders (
    workspace_id   text        NOT NULL,
    order_id       text        NOT NULL,
    person_id      uuid        NOT NULL,
    status         text        NOT NULL,
    currency       text        NOT NULL DEFAULT '',
    total_minor    bigint      NOT NULL DEFAULT 0,
    refunded_minor bigint      NOT NULL DEFAULT 0,
    channel        text        NOT NULL DEFAULT '',
    store_id       text        NOT NULL DEFAULT '',
    staff_id       text        NOT NULL DEFAULT '',
    order_time     timestamptz,
    items          jsonb       NOT NULL DEFAULT '[]'::jsonb,
    -- Refund message id -> amount in minor units (null: the rest).
    refunds        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    cancelled      boolean     NOT NULL DEFAULT false,
    points_earned  bigint      NOT NULL DEFAULT 0,
    message_id     text        NOT NULL DEFAULT '',
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, order_id)
);
CREATE INDEX orders_by_person ON orders (workspace_id, person_id, order_time DESC NULLS LAST, order_id DESC);

-- Points ------------------------------------------------------------------------------------
CREATE TABLE points_ledger (
    workspace_id  text        NOT NULL,
    person_id     uuid        NOT NULL,
    entry_id      uuid        NOT NULL,
    kind          text        NOT NULL,
    points        bigint      NOT NULL,
    balance_after bigint      NOT NULL CHECK (balance_after >= 0),
    reference     text        NOT NULL,
    reason        text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz,
    PRIMARY KEY (workspace_id, person_id, entry_id),
    UNIQUE (workspace_id, person_id, reference)
);

-- Timers ------------------------------------------------------------------------------------
-- One row per profile that will change by time alone: when its next transition is due.
CREATE TABLE timers (
    workspace_id text        NOT NULL,
    person_id    uuid        NOT NULL,
    due_at       timestamptz NOT NULL,
    -- What makes it due: 'time', or 'manual' when new settings make every profile due at once.
    cause        text        NOT NULL DEFAULT 'time',
    PRIMARY KEY (workspace_id, person_id)
);
CREATE INDEX timers_due ON timers (due_at);

-- Settings ----------------------------------------------------------------------------------
CREATE TABLE settings (
    workspace_id text        NOT NULL,
    version      integer     NOT NULL,
    document     jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, version)
);

-- Objects -----------------------------------------------------------------------------------
CREATE TABLE products (
    workspace_id text        NOT NULL,
    product_id   text        NOT NULL,
    sku          text        NOT NULL DEFAULT '',
    display_name text        NOT NULL DEFAULT '',
    category     text        NOT NULL DEFAULT '',
    brand        text        NOT NULL DEFAULT '',
    price_minor  bigint      NOT NULL DEFAULT 0,
    currency     text        NOT NULL DEFAULT '',
    tags         text[]      NOT NULL DEFAULT '{}',
    attributes   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    tags_version bigint      NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, product_id)
);

CREATE TABLE stores (
    workspace_id text        NOT NULL,
    store_id     text        NOT NULL,
    code         text        NOT NULL DEFAULT '',
    display_name text        NOT NULL DEFAULT '',
    city         text        NOT NULL DEFAULT '',
    region_code  text        NOT NULL DEFAULT '',
    address      text        NOT NULL DEFAULT '',
    tags         text[]      NOT NULL DEFAULT '{}',
    attributes   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    tags_version bigint      NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, store_id)
);

CREATE TABLE staff (
    workspace_id text        NOT NULL,
    staff_id     text        NOT NULL,
    display_name text        NOT NULL DEFAULT '',
    store_id     text        NOT NULL DEFAULT '',
    tags         text[]      NOT NULL DEFAULT '{}',
    attributes   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    tags_version bigint      NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, staff_id)
);
