-- Kit tables present in every service schema.

-- Transactional outbox: state changes that must be announced are written here in the same
-- transaction as the change; cdpkit.outbox.OutboxRelay publishes them to JetStream with
-- Nats-Msg-Id = msg_id (so a re-publish after a crash is de-duplicated) and deletes them.
CREATE TABLE outbox (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id text        NOT NULL,
    subject      text        NOT NULL,
    msg_id       text        NOT NULL,
    payload      bytea       NOT NULL,
    headers      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text
);

-- Inbox: message ids a consumer has already applied, for handlers with no natural unique key.
CREATE TABLE inbox (
    consumer     text        NOT NULL,
    workspace_id text        NOT NULL,
    msg_id       text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, workspace_id, msg_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);
