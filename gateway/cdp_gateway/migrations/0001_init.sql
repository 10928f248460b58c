-- Gateway schema: workspaces and their API keys (stored hashed, never in clear).

CREATE TABLE workspaces (
    workspace_id text        PRIMARY KEY,
    display_name text        NOT NULL,
    time_zone    text        NOT NULL DEFAULT 'Asia/Shanghai',
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_id       text        PRIMARY KEY,
    workspace_id text        NOT NULL REFERENCES workspaces (workspace_id),
    kind         text        NOT NULL CHECK (kind IN ('write', 'secret')),
    scopes       text[]      NOT NULL DEFAULT '{}',
    -- SHA-256 of the whole key. Keys carry 190 random bits, so a plain hash cannot be reversed.
    key_hash     bytea       NOT NULL UNIQUE,
    -- The first characters of the key, to let people recognise it in listings.
    display_hint text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX api_keys_by_workspace ON api_keys (workspace_id);
