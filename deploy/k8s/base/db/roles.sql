-- Database roles of the CDP: for every component a schema and two roles, each limited to it.
--
--   cdp_<component>      owns schema <component>; the migration Job logs in as it
--                        (python -m cdp_<component> migrate): DDL in its schema only.
--   cdp_<component>_app  the running service: SELECT/INSERT/UPDATE/DELETE on the tables and
--                        sequences of its schema only; no DDL, nothing in any other schema.
--
-- Run once per database as a superuser, before the first migration (the prod overlay: the
-- CloudNativePG Cluster's bootstrap.initdb.postInitApplicationSQLRefs; the dev overlay and
-- compose: the db-setup job). Idempotent: re-running it changes nothing. The roles are created
-- NOLOGIN without passwords: logins and passwords are set outside this file (CloudNativePG
-- managed roles with passwordSecret, or the db-setup job), never in the repository.

DO $roles$
DECLARE
    component text;
    owner_role text;
    app_role text;
BEGIN
    -- Nobody connects or creates anything unless granted below.
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
    REVOKE ALL ON SCHEMA public FROM PUBLIC;

    FOREACH component IN ARRAY ARRAY['gateway', 'identity', 'profile', 'segment', 'campaign'] LOOP
        owner_role := 'cdp_' || component;
        app_role := 'cdp_' || component || '_app';
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = owner_role) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', owner_role);
        END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = app_role) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', app_role);
        END IF;
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I, %I', current_database(), owner_role, app_role);

        -- The schema exists before the first migration and belongs to the owner role, which
        -- therefore needs no CREATE on the database (cdpkit.migrate creates it only when missing).
        EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', component, owner_role);
        EXECUTE format('ALTER SCHEMA %I OWNER TO %I', component, owner_role);
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', component);
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', component, app_role);

        -- Tables and sequences the owner creates later (every migration) are the app's to use...
        EXECUTE format(
            'ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I',
            owner_role, component, app_role);
        EXECUTE format(
            'ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO %I',
            owner_role, component, app_role);
        -- ...and so are those that exist already (this file re-run on an existing database).
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I', component, app_role);
        EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I', component, app_role);
    END LOOP;
END
$roles$;
