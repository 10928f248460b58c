-- The periodic RFM recompute runs in every replica: a lease per workspace lets one of them do it.
CREATE TABLE rfm_leases (
    workspace_id text        PRIMARY KEY,
    holder       text        NOT NULL,
    until        timestamptz NOT NULL
);
