-- Identity schema: persons (OneIDs) and the identifiers that point at them.

CREATE TABLE persons (
    workspace_id text        NOT NULL,
    person_id    uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, person_id)
);

-- One row per identifier; the primary key guarantees an identifier belongs to one person.
CREATE TABLE identifiers (
    workspace_id      text        NOT NULL,
    id_type           text        NOT NULL,
    id_value          text        NOT NULL,
    person_id         uuid        NOT NULL,
    first_seen_at     timestamptz NOT NULL DEFAULT now(),
    source_message_id text,
    PRIMARY KEY (workspace_id, id_type, id_value),
    FOREIGN KEY (workspace_id, person_id) REFERENCES persons (workspace_id, person_id)
);
CREATE INDEX identifiers_by_person ON identifiers (workspace_id, person_id);
