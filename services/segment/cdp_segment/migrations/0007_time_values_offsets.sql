-- try_timestamptz as 0005, corrected (0005 is released: an applied migration is never edited):
-- a date followed by a negative offset ("2026-05-19-05:00", midnight at -05:00) was no time
-- because PostgreSQL's cast refuses that form, and 9999-12-31 23:59:59.999999 UTC itself (which
-- asyncpg stores as infinity) was a time. The twin of rules.memory.as_time: no zone means UTC; a
-- date with an offset is midnight there; up to 9 fraction digits, truncated to microseconds.
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
    -- PostgreSQL refuses a date followed directly by a negative offset ("2026-05-19-05:00").
    IF substr(value, 11, 1) <> 'T' THEN
        value := left(value, 10) || 'T00:00' || substr(value, 11);
    END IF;
    moment := regexp_replace(value, '(\.[0-9]{6})[0-9]+', '\1')::timestamptz;
    RETURN CASE WHEN moment < '9999-12-31 23:59:59.999999+00' THEN moment END;
EXCEPTION WHEN others THEN
    RETURN NULL;
END;
$$;
