-- Campaign runtime (issue 6): published versions, instances and their timers, deliveries (the
-- delivery outbox), coupons, workspace settings, a projection of date attributes.

ALTER TABLE journeys
    ADD COLUMN version      bigint      NOT NULL DEFAULT 0,
    ADD COLUMN published_at timestamptz,
    -- Scheduled and date triggers: when the scheduler next runs this journey, and where a
    -- broadcast left off (a segment page token) so a crash resumes instead of restarting.
    ADD COLUMN next_run_at  timestamptz,
    ADD COLUMN run_key      text        NOT NULL DEFAULT '',
    ADD COLUMN run_cursor   text        NOT NULL DEFAULT '';

CREATE INDEX journeys_next_run ON journeys (next_run_at) WHERE next_run_at IS NOT NULL;

CREATE TABLE journey_versions (
    workspace_id text        NOT NULL,
    journey_id   text        NOT NULL,
    version      bigint      NOT NULL,
    definition   jsonb       NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, journey_id, version)
);

CREATE TABLE instances (
    workspace_id    text        NOT NULL,
    instance_id     uuid        NOT NULL,
    journey_id      text        NOT NULL,
    version         bigint      NOT NULL,
    person_id       text        NOT NULL,
    -- Enrolment key: (journey, person, trigger key) enters at most once.
    trigger_key     text        NOT NULL,
    state           text        NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'completed', 'exited')),
    step_id         text        NOT NULL DEFAULT '',
    -- ready: run step_id at wake_at; waiting: step_id is a wait in progress until wake_at.
    phase           text        NOT NULL DEFAULT 'ready' CHECK (phase IN ('ready', 'waiting')),
    wake_at         timestamptz,
    wait_event      text,
    variant         text        NOT NULL DEFAULT '',
    context         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    events_seen     jsonb       NOT NULL DEFAULT '[]'::jsonb,
    exit_reason     text        NOT NULL DEFAULT '',
    entered_at      timestamptz NOT NULL,
    step_entered_at timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    goal_deadline   timestamptz,
    converted_at    timestamptz,
    conversion_step text        NOT NULL DEFAULT '',
    revenue_minor   bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, instance_id),
    UNIQUE (workspace_id, journey_id, person_id, trigger_key)
);

-- The scheduler's queue: instances whose timer is due.
CREATE INDEX instances_due ON instances (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX instances_person ON instances (workspace_id, person_id);
CREATE INDEX instances_goal ON instances (workspace_id, person_id, goal_deadline)
    WHERE converted_at IS NULL AND goal_deadline IS NOT NULL;

-- One row per (instance, step) that sends: the transactional outbox of messages. The delivery
-- id ("{instance}.{step}") is the provider's idempotency key.
CREATE TABLE deliveries (
    workspace_id    text        NOT NULL,
    delivery_id     text        NOT NULL,
    journey_id      text        NOT NULL,
    version         bigint      NOT NULL,
    instance_id     uuid        NOT NULL,
    step_id         text        NOT NULL,
    variant         text        NOT NULL DEFAULT '',
    person_id       text        NOT NULL,
    channel         text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'delivered', 'failed', 'dead', 'suppressed')),
    reason          text        NOT NULL DEFAULT '',
    attempts        integer     NOT NULL DEFAULT 0,
    deferrals       integer     NOT NULL DEFAULT 0,
    -- What the template needs besides the profile: trigger event, coupon code, recommendations.
    context         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    sent_at         timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, delivery_id)
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
-- Frequency caps count a person's recent messages per channel.
CREATE INDEX deliveries_caps ON deliveries (workspace_id, person_id, channel, sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX deliveries_journey ON deliveries (workspace_id, journey_id, status);
-- A person's messages, newest first (Customer 360).
CREATE INDEX deliveries_person ON deliveries (workspace_id, person_id, created_at DESC, delivery_id DESC);

CREATE TABLE coupon_pools (
    workspace_id text        NOT NULL,
    pool_id      text        NOT NULL,
    display_name text        NOT NULL DEFAULT '',
    kind         text        NOT NULL CHECK (kind IN ('imported', 'generated')),
    prefix       text        NOT NULL DEFAULT '',
    code_length  integer     NOT NULL DEFAULT 10,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, pool_id)
);

CREATE TABLE coupon_codes (
    workspace_id text        NOT NULL,
    pool_id      text        NOT NULL,
    code         text        NOT NULL,
    person_id    text,
    journey_id   text,
    instance_id  uuid,
    issued_at    timestamptz,
    redeemed_at  timestamptz,
    redeemed_by  text        NOT NULL DEFAULT '',
    PRIMARY KEY (workspace_id, pool_id, code)
);

-- At most one code per person per campaign.
CREATE UNIQUE INDEX coupon_codes_one_per_person ON coupon_codes (workspace_id, journey_id, person_id)
    WHERE person_id IS NOT NULL;
CREATE INDEX coupon_codes_free ON coupon_codes (workspace_id, pool_id) WHERE person_id IS NULL;
CREATE INDEX coupon_codes_code ON coupon_codes (workspace_id, code);

CREATE TABLE workspace_settings (
    workspace_id      text        NOT NULL,
    time_zone         text        NOT NULL DEFAULT 'Asia/Shanghai',
    quiet_hours_start text        NOT NULL DEFAULT '21:00',
    quiet_hours_end   text        NOT NULL DEFAULT '09:00',
    cap_per_day       integer     NOT NULL DEFAULT 0,
    cap_per_week      integer     NOT NULL DEFAULT 0,
    consent_mode      text        NOT NULL DEFAULT 'opt_in',
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id)
);

-- Date attributes from ProfileChanged snapshots, for birthday and points-expiry triggers.
CREATE TABLE person_dates (
    workspace_id       text        NOT NULL,
    person_id          text        NOT NULL,
    birthday_month_day text,
    points_expiry_at   timestamptz,
    profile_version    bigint      NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, person_id)
);

CREATE INDEX person_dates_birthday ON person_dates (workspace_id, birthday_month_day);
CREATE INDEX person_dates_points ON person_dates (workspace_id, points_expiry_at);
