-- Issue 3: merges with a log, conflicts, quarantine, unmerge, versioned rules, a resolution
-- journal for dry runs, and PII at rest as keyed hash + AES-GCM.

-- Persons: merged-away persons stay (status 'merged', merged_into the survivor) so their ids
-- keep resolving; quarantined persons take no more merges or identifiers.
ALTER TABLE persons
    ADD COLUMN status            text        NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'merged', 'quarantined')),
    ADD COLUMN merged_into       uuid,
    ADD COLUMN merge_count       integer     NOT NULL DEFAULT 0,
    ADD COLUMN quarantine_reason text,
    ADD COLUMN quarantined_at    timestamptz;
CREATE INDEX persons_by_survivor ON persons (workspace_id, merged_into) WHERE merged_into IS NOT NULL;
CREATE INDEX persons_quarantined ON persons (workspace_id, person_id) WHERE status = 'quarantined';

-- Identifiers: id_value is now the lookup key. For PII types (phone, email, custom types marked
-- pii) it is 'h:' + base64url(HMAC-SHA256) and `sealed` holds the AES-GCM ciphertext for display;
-- plaintext rows written before this migration are converted by the service at start-up.
-- anchor_*: the identifier this one was linked from; origin_person_id: the person it was first
-- linked to; both let an unmerge recompute the graph. person_id NULL = removed and blocked.
ALTER TABLE identifiers
    ADD COLUMN sealed           bytea,
    ADD COLUMN anchor_type      text,
    ADD COLUMN anchor_value     text,
    ADD COLUMN origin_person_id uuid,
    ADD COLUMN rule             text,
    ADD COLUMN blocked_reason   text,
    ALTER COLUMN person_id DROP NOT NULL;
UPDATE identifiers SET origin_person_id = person_id WHERE origin_person_id IS NULL;

-- The merge log: append-only; an unmerge marks an entry undone and never deletes it.
CREATE TABLE merges (
    workspace_id  text        NOT NULL,
    merge_id      uuid        NOT NULL,
    survivor_id   uuid        NOT NULL,
    merged_id     uuid        NOT NULL,
    -- Two identifiers seen on one message: anchor (survivor's side) and bridge (merged side).
    anchor_type   text        NOT NULL,
    anchor_value  text        NOT NULL,
    anchor_sealed bytea,
    bridge_type   text        NOT NULL,
    bridge_value  text        NOT NULL,
    bridge_sealed bytea,
    message_id    text        NOT NULL,
    rule          text        NOT NULL,
    rule_version  integer     NOT NULL,
    kind          text        NOT NULL DEFAULT 'auto' CHECK (kind IN ('auto', 'suggestion')),
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    undone_at     timestamptz,
    undo_reason   text,
    PRIMARY KEY (workspace_id, merge_id)
);
CREATE INDEX merges_by_survivor ON merges (workspace_id, survivor_id);
CREATE INDEX merges_by_merged ON merges (workspace_id, merged_id);
CREATE INDEX merges_by_time ON merges (workspace_id, created_at, merge_id);

-- Pairs of persons an operator split apart: never merged again automatically.
CREATE TABLE separations (
    workspace_id text        NOT NULL,
    person_a     uuid        NOT NULL,
    person_b     uuid        NOT NULL,
    merge_id     uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, person_a, person_b),
    CHECK (person_a < person_b)
);
CREATE INDEX separations_by_b ON separations (workspace_id, person_b);

-- Merges (or links) refused by a limit, a separation, a quarantine or a guardrail.
CREATE TABLE conflicts (
    workspace_id    text        NOT NULL,
    conflict_id     uuid        NOT NULL,
    kind            text        NOT NULL,
    id_type         text        NOT NULL,
    id_value        text        NOT NULL,
    sealed          bytea,
    person_id       uuid,
    other_person_id uuid,
    message_id      text        NOT NULL,
    detail          text        NOT NULL,
    rule_version    integer     NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, conflict_id),
    UNIQUE (workspace_id, message_id, id_type, id_value)
);
CREATE INDEX conflicts_by_time ON conflicts (workspace_id, created_at, conflict_id);

-- Identifiers removed by an operator (append-only).
CREATE TABLE removals (
    workspace_id text        NOT NULL,
    removal_id   uuid        NOT NULL,
    person_id    uuid        NOT NULL,
    id_type      text        NOT NULL,
    id_value     text        NOT NULL,
    sealed       bytea,
    blocked      boolean     NOT NULL,
    reason       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, removal_id)
);

-- Versioned rules; the highest version is in force, version 0 (no row) is the built-in default.
CREATE TABLE rules (
    workspace_id text        NOT NULL,
    version      integer     NOT NULL CHECK (version > 0),
    document     jsonb       NOT NULL,
    comment      text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, version)
);

-- What each message resolved to, for replays (a message seen again changes nothing) and for dry
-- runs of proposed rules. Identifiers are sealed (they include PII); pruned after
-- CDP_IDENTITY_JOURNAL_DAYS.
CREATE TABLE journal (
    workspace_id text        NOT NULL,
    message_id   text        NOT NULL,
    seq          bigint      GENERATED ALWAYS AS IDENTITY,
    resolved_at  timestamptz NOT NULL DEFAULT now(),
    person_id    uuid        NOT NULL,
    identifiers  bytea       NOT NULL,
    PRIMARY KEY (workspace_id, message_id)
);
-- By time only: an index led by workspace_id would compete with the primary key for lookups by
-- message id (and win while the table's statistics are young).
CREATE INDEX journal_by_time ON journal (resolved_at);
