-- Customer value (issue 8): the models fitted per workspace, the predictions per person, the
-- recompute jobs, and the bulk imports (checkpoints, staged rows, rejected rows).

-- Models ------------------------------------------------------------------------------------
-- One row per fit: BG/NBD (purchases, P(alive)) and Gamma-Gamma (spend) parameters with their
-- log-likelihoods, the data they were fitted on and the prediction settings used with them.
CREATE TABLE value_models (
    workspace_id          text        NOT NULL,
    model_id              bigint      NOT NULL,
    job_id                text        NOT NULL,
    fit_time              timestamptz NOT NULL,
    -- Orders up to the end of this calendar day (workspace time zone) were used.
    calibration_end       date        NOT NULL,
    time_zone             text        NOT NULL,
    currency              text        NOT NULL,
    customers             bigint      NOT NULL,
    repeat_customers      bigint      NOT NULL,
    bgnbd_r               float8      NOT NULL,
    bgnbd_alpha           float8      NOT NULL,
    bgnbd_a               float8      NOT NULL,
    bgnbd_b               float8      NOT NULL,
    bgnbd_log_likelihood  float8      NOT NULL,
    -- Null when too few customers bought twice with a positive value to fit the spend model.
    gg_p                  float8,
    gg_q                  float8,
    gg_gamma              float8,
    gg_log_likelihood     float8,
    gg_customers          bigint      NOT NULL DEFAULT 0,
    horizon_weeks         integer     NOT NULL,
    clv_months            integer     NOT NULL,
    monthly_discount_rate float8      NOT NULL,
    PRIMARY KEY (workspace_id, model_id)
);

-- Predictions -------------------------------------------------------------------------------
-- One row per (person, model): a recompute inserts the rows of its model, then deletes the older
-- models' rows (a plain insert and delete cost far less than updating a million rows in place).
-- announced_*: the values the last ProfileChanged carried (computed.p_alive ...), carried over
-- from model to model; `announce` marks the rows whose values moved materially since and are
-- still to be announced (an interrupted announcement resumes from them).
CREATE TABLE predictions (
    workspace_id               text    NOT NULL,
    person_id                  uuid    NOT NULL,
    model_id                   bigint  NOT NULL,
    p_alive                    float8  NOT NULL,
    expected_purchases         float8  NOT NULL,
    expected_order_value_minor bigint  NOT NULL,
    predicted_clv_minor        bigint  NOT NULL,
    announced_p_alive          float8,
    announced_expected_purchases float8,
    announced_order_value_minor bigint,
    announced_clv_minor        bigint,
    announce                   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (workspace_id, person_id, model_id)
);
CREATE INDEX predictions_to_announce ON predictions (workspace_id, model_id, person_id) WHERE announce;

-- Jobs --------------------------------------------------------------------------------------
-- A recompute asked for through the API or by the schedule; run by one replica at a time per
-- workspace (a session advisory lock held while it runs: a job left `running` by a dead process
-- is taken over by the next worker whose try-lock succeeds).
CREATE TABLE prediction_jobs (
    workspace_id    text        NOT NULL,
    job_id          text        NOT NULL,
    -- api or schedule
    origin          text        NOT NULL,
    -- pending, running, succeeded, failed
    state           text        NOT NULL DEFAULT 'pending',
    calibration_end date,
    create_time     timestamptz NOT NULL,
    start_time      timestamptz,
    end_time        timestamptz,
    model_id        bigint,
    customers       bigint      NOT NULL DEFAULT 0,
    announced       bigint      NOT NULL DEFAULT 0,
    -- Seconds per phase: read, fit, predict, write, announce.
    timings         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    error           text        NOT NULL DEFAULT '',
    PRIMARY KEY (workspace_id, job_id)
);
CREATE INDEX prediction_jobs_open ON prediction_jobs (create_time) WHERE state IN ('pending', 'running');

-- Imports -----------------------------------------------------------------------------------
-- One row per import (id derived from the file's content unless given): the checkpoint, moved
-- in the same transaction as the rows it covers.
CREATE TABLE imports (
    workspace_id   text        NOT NULL,
    import_id      text        NOT NULL,
    kind           text        NOT NULL,
    format         text        NOT NULL,
    source_name    text        NOT NULL DEFAULT '',
    -- SHA-256 of the file: resuming with another file under the same import id is refused.
    digest         text        NOT NULL,
    -- Lines of the file read and staged (or rejected), in file order.
    staged_through bigint      NOT NULL DEFAULT 0,
    rows_staged    bigint      NOT NULL DEFAULT 0,
    rows_applied   bigint      NOT NULL DEFAULT 0,
    rows_rejected  bigint      NOT NULL DEFAULT 0,
    -- running or done
    state          text        NOT NULL DEFAULT 'running',
    start_time     timestamptz NOT NULL,
    end_time       timestamptz,
    PRIMARY KEY (workspace_id, import_id)
);

-- Rows read and resolved, not applied yet: COPYed in, applied in order through the profile's own
-- rules, deleted when applied. `payload` is JSON; sealed (PiiVault, context
-- <workspace>/import/<import>/<line>) when it holds personal data (customer traits, identifiers).
CREATE TABLE import_rows (
    workspace_id text        NOT NULL,
    import_id    text        NOT NULL,
    line         bigint      NOT NULL,
    person_id    uuid,
    payload      bytea       NOT NULL,
    sealed       boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (workspace_id, import_id, line)
);

-- Rows refused, with the reason (the reject file is written from here: nothing is lost or
-- written twice when a run is interrupted and resumed).
CREATE TABLE import_rejects (
    workspace_id text   NOT NULL,
    import_id    text   NOT NULL,
    line         bigint NOT NULL,
    reason       text   NOT NULL,
    -- The raw line, sealed (it may hold personal data).
    raw          bytea  NOT NULL,
    PRIMARY KEY (workspace_id, import_id, line)
);
