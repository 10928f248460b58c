-- Profile schema: one row per person with its traits and activity counters, and every event once.

CREATE TABLE profiles (
    workspace_id  text        NOT NULL,
    person_id     uuid        NOT NULL,
    traits        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    event_count   bigint      NOT NULL DEFAULT 0,
    first_seen_at timestamptz,
    last_seen_at  timestamptz,
    version       bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, person_id)
);

-- The primary key is the de-duplication: a replayed event is never stored or counted twice.
CREATE TABLE events (
    workspace_id text        NOT NULL,
    message_id   text        NOT NULL,
    person_id    uuid        NOT NULL,
    type         text        NOT NULL,
    event        text        NOT NULL DEFAULT '',
    properties   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    context      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    event_time   timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, message_id)
);
CREATE INDEX events_by_person ON events (workspace_id, person_id, event_time DESC, message_id DESC);
