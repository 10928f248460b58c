-- Review fixes of the 360 profile: a partition for old events, timers per workspace, settings
-- re-evaluated in the background, identity's announcements applied in stream order.

-- Events older than the first monthly partition (historical imports) share one partition, so an
-- old timestamp never creates a partition on the hot path; monthly partitions go on from there
-- (created ahead of time by the service, attached without blocking readers).
DO $$
DECLARE
    bound timestamptz;
BEGIN
    SELECT min(make_timestamptz(substr(c.relname, 9, 4)::int, substr(c.relname, 13, 2)::int, 1, 0, 0, 0, 'UTC'))
    INTO bound
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_p[0-9]{6}$';
    IF bound IS NULL THEN
        bound := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    END IF;
    EXECUTE format('CREATE TABLE events_history PARTITION OF events FOR VALUES FROM (MINVALUE) TO (%L)', bound);
END $$;

-- Due timers are taken per workspace (each workspace gets its turn).
DROP INDEX timers_due;
CREATE INDEX timers_due ON timers (workspace_id, due_at);

-- A new settings version re-evaluates every profile of its workspace in the background, in
-- person order from `after_person`; `windows` are windowed traits to rebuild from stored events
-- (declared or redefined by the new version).
CREATE TABLE reevaluations (
    workspace_id text        PRIMARY KEY,
    version      integer     NOT NULL,
    after_person uuid,
    windows      text[]      NOT NULL DEFAULT '{}',
    started_at   timestamptz NOT NULL DEFAULT now()
);

-- How far identity's announcements (the IDENTITY stream) have been applied: merges and splits
-- are applied one at a time in stream order, the position committed with their effect.
CREATE TABLE stream_positions (
    name       text        PRIMARY KEY,
    sequence   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
