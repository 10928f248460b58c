-- Per-workspace time zones (profile's ProfileSettings.time_zone, announced as
-- cdp.events.v1.WorkspaceSettingsChanged). A workspace without a row uses CDP_SEGMENT_TIME_ZONE.
CREATE TABLE workspace_settings (
    workspace_id text PRIMARY KEY,
    time_zone text NOT NULL,
    -- profile's settings version: an older announcement never overwrites a newer one
    version bigint NOT NULL,
    update_time timestamptz NOT NULL DEFAULT now()
);

-- try_timestamptz (0007) with the workspace time zone: a date-only value without an offset
-- ("2026-05-19") is midnight in `zone`; every other text reads as before (no zone: UTC). The
-- twin of rules.memory.as_time(value, zone); as there, an instant from 9999-12-31
-- 23:59:59.999999 UTC on is no time.
CREATE OR REPLACE FUNCTION try_timestamptz(value text, zone text) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
    moment timestamptz;
BEGIN
    IF value !~ '^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}$' THEN
        RETURN try_timestamptz(value);
    END IF;
    moment := value::date::timestamp AT TIME ZONE zone;
    RETURN CASE WHEN moment < '9999-12-31 23:59:59.999999+00' THEN moment END;
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$;
