-- Segment schema: audience definitions. The projection and memberships arrive with issue 5.

CREATE TABLE segments (
    workspace_id text        NOT NULL,
    segment_id   text        NOT NULL,
    display_name text        NOT NULL,
    description  text        NOT NULL DEFAULT '',
    rule         text        NOT NULL,
    etag         text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, segment_id)
);
