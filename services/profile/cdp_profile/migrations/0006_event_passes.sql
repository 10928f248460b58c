-- Stored events are rewritten when what counts as personal changes (rules.PII_RULES_VERSION, or
-- a workspace's pii_traits) or the part of the context kept does (consumers.CONTEXT_RULES_VERSION):
-- a background pass per change (`rules`; `workspace_id` '' for every workspace), through
-- event_keys in (workspace, message id) order from the position, resumable; how many events it
-- examined and rewrote so far.
CREATE TABLE event_passes (
    rules           text        PRIMARY KEY,
    workspace_id    text        NOT NULL DEFAULT '',
    after_workspace text        NOT NULL DEFAULT '',
    after_message   text        NOT NULL DEFAULT '',
    examined        bigint      NOT NULL DEFAULT 0,
    rewritten       bigint      NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
