-- ISO 8601 text to timestamptz, NULL for anything else: the twin of rules.memory.as_time.
-- No zone means UTC (whatever the session's TimeZone); a date with an offset is midnight there;
-- up to 9 fractional digits, truncated to microseconds; an instant after the last one Python
-- represents (9999-12-31 23:59:59.999999 UTC) is not a time either.
CREATE OR REPLACE FUNCTION try_timestamptz(value text) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
    moment timestamptz;
BEGIN
    IF value !~ '^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,9})?)?)?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])?$' THEN
        RETURN NULL;
    END IF;
    IF value !~ '(Z|[+-][0-9]{2}:[0-9]{2})$' THEN
        value := value || '+00:00';
    END IF;
    moment := regexp_replace(value, '(\.[0-9]{6})[0-9]+', '\1')::timestamptz;
    RETURN CASE WHEN moment <= '9999-12-31 23:59:59.999999+00' THEN moment END;
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$;
