-- Campaign schema: journey definitions. Instances, timers and deliveries arrive with issue 6.

CREATE TABLE journeys (
    workspace_id text        NOT NULL,
    journey_id   text        NOT NULL,
    display_name text        NOT NULL,
    description  text        NOT NULL DEFAULT '',
    state        text        NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'active', 'paused', 'archived')),
    definition   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    etag         text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, journey_id)
);
