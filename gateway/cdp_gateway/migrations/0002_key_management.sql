-- Key management API (issue 7): names, per-key rate limits, rotation with a grace period.
-- Key ids become unique per workspace (client-chosen ids), so the key is (workspace, key).

ALTER TABLE api_keys
    ADD COLUMN display_name         text        NOT NULL DEFAULT '',
    -- Events/s (write keys) or requests/s (secret keys) for the whole fleet; 0 = the default.
    ADD COLUMN rate_limit           integer     NOT NULL DEFAULT 0 CHECK (rate_limit >= 0),
    ADD COLUMN rotated_at           timestamptz,
    -- The secret before the last rotation, accepted until previous_expires_at.
    ADD COLUMN previous_key_hash    bytea       UNIQUE,
    ADD COLUMN previous_expires_at  timestamptz;

ALTER TABLE api_keys DROP CONSTRAINT api_keys_pkey;
ALTER TABLE api_keys ADD PRIMARY KEY (workspace_id, key_id);
DROP INDEX api_keys_by_workspace;
CREATE INDEX api_keys_by_workspace_created ON api_keys (workspace_id, created_at, key_id);
