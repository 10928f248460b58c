-- Match suggestions: persons that share no identifier but look like one shopper.

-- Attributes used for matching (names, birth date, address, phone), sealed as one JSON value;
-- dirty = changed since the suggester last looked at it.
CREATE TABLE match_profiles (
    workspace_id text        NOT NULL,
    person_id    uuid        NOT NULL,
    attributes   bytea       NOT NULL,
    dirty        boolean     NOT NULL DEFAULT true,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, person_id)
);
CREATE INDEX match_profiles_dirty ON match_profiles (workspace_id, person_id) WHERE dirty;

-- Blocking keys as keyed hashes (no plaintext): persons sharing a key are compared.
CREATE TABLE match_keys (
    workspace_id text NOT NULL,
    block_key    text NOT NULL,
    person_id    uuid NOT NULL,
    PRIMARY KEY (workspace_id, block_key, person_id)
);
CREATE INDEX match_keys_by_person ON match_keys (workspace_id, person_id);

CREATE TABLE match_suggestions (
    workspace_id  text             NOT NULL,
    suggestion_id uuid             NOT NULL,
    person_a      uuid             NOT NULL,
    person_b      uuid             NOT NULL,
    score         double precision NOT NULL,
    comparisons   jsonb            NOT NULL,
    state         text             NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'accepted', 'rejected', 'obsolete')),
    created_at    timestamptz      NOT NULL DEFAULT now(),
    decided_at    timestamptz,
    merge_id      uuid,
    PRIMARY KEY (workspace_id, suggestion_id),
    UNIQUE (workspace_id, person_a, person_b),
    CHECK (person_a < person_b)
);
CREATE INDEX match_suggestions_by_state ON match_suggestions (workspace_id, state, created_at, suggestion_id);
