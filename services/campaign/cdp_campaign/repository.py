"""SQL for the campaign schema. Every query is scoped by workspace_id."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from cdp_campaign.domain import Journey, WorkspaceSettings

_COLUMNS = (
    "workspace_id, journey_id, display_name, description, definition, state, etag, created_at, updated_at, "
    "version, published_at"
)


def _journey(row: asyncpg.Record) -> Journey:
    return Journey(**dict(row))


async def insert(conn: asyncpg.Connection, journey: Journey) -> Journey | None:
    """The stored journey, or None when the id is taken."""
    row = await conn.fetchrow(
        f"""INSERT INTO journeys (workspace_id, journey_id, display_name, description, definition, state, etag)
            VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING {_COLUMNS}""",
        journey.workspace_id,
        journey.journey_id,
        journey.display_name,
        journey.description,
        journey.definition,
        journey.state,
        journey.etag,
    )
    return _journey(row) if row else None


async def get(
    conn: asyncpg.Connection, workspace_id: str, journey_id: str, *, for_update: bool = False
) -> Journey | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM journeys WHERE workspace_id = $1 AND journey_id = $2{lock}", workspace_id, journey_id
    )
    return _journey(row) if row else None


async def update(conn: asyncpg.Connection, journey: Journey) -> Journey:
    row = await conn.fetchrow(
        f"""UPDATE journeys SET display_name = $3, description = $4, definition = $5, etag = $6, updated_at = now()
            WHERE workspace_id = $1 AND journey_id = $2 RETURNING {_COLUMNS}""",
        journey.workspace_id,
        journey.journey_id,
        journey.display_name,
        journey.description,
        journey.definition,
        journey.etag,
    )
    return _journey(row)


async def delete(conn: asyncpg.Connection, workspace_id: str, journey_id: str) -> None:
    """The journey; its versions, instances and deliveries stay as history (a person's messages,
    frequency caps), and version numbers are not reused (:func:`publish`)."""
    await conn.execute("DELETE FROM journeys WHERE workspace_id = $1 AND journey_id = $2", workspace_id, journey_id)


# Rows ($1 workspace, $2 journey) of the journey as it is now: a journey deleted and created again
# with the same id publishes versions after the old ones, so the old journey's instances and
# deliveries (versions published before this journey was created) are not its own.
_THIS_JOURNEY = """version > coalesce((SELECT max(v.version) FROM journey_versions v JOIN journeys j
    ON j.workspace_id = v.workspace_id AND j.journey_id = v.journey_id
    WHERE v.workspace_id = $1 AND v.journey_id = $2 AND v.published_at < j.created_at), 0)"""


async def cancel_journey(conn: asyncpg.Connection, workspace_id: str, journey_id: str) -> list[dict]:
    """Running instances exit and pending deliveries are suppressed; returns those deliveries."""
    await conn.execute(
        """UPDATE instances SET state = 'exited', exit_reason = 'journey_deleted', wake_at = NULL, updated_at = now()
           WHERE workspace_id = $1 AND journey_id = $2 AND state = 'active'""",
        workspace_id,
        journey_id,
    )
    rows = await conn.fetch(
        f"""UPDATE deliveries SET status = 'suppressed', reason = 'journey_deleted', updated_at = now()
            WHERE workspace_id = $1 AND journey_id = $2 AND status = 'pending' RETURNING {DELIVERY_COLUMNS}""",
        workspace_id,
        journey_id,
    )
    return [dict(r) for r in rows]


async def list_page(conn: asyncpg.Connection, workspace_id: str, *, after: str, limit: int) -> list[Journey]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM journeys WHERE workspace_id = $1 AND journey_id > $2
            ORDER BY journey_id LIMIT $3""",
        workspace_id,
        after,
        limit,
    )
    return [_journey(r) for r in rows]


# Publishing


async def publish(
    conn: asyncpg.Connection,
    journey: Journey,
    definition: dict,
    etag: str,
    next_run_at: datetime | None,
    run_key: str = "",
) -> Journey:
    # After every version ever published under this id (a deleted journey's included).
    version = 1 + await conn.fetchval(
        "SELECT coalesce(max(version), 0) FROM journey_versions WHERE workspace_id = $1 AND journey_id = $2",
        journey.workspace_id,
        journey.journey_id,
    )
    await conn.execute(
        "INSERT INTO journey_versions (workspace_id, journey_id, version, definition) VALUES ($1, $2, $3, $4)",
        journey.workspace_id,
        journey.journey_id,
        version,
        definition,
    )
    row = await conn.fetchrow(
        f"""UPDATE journeys SET state = 'active', version = $3, published_at = now(), definition = $4, etag = $5,
                updated_at = now(), next_run_at = $6, run_key = $7, run_cursor = ''
            WHERE workspace_id = $1 AND journey_id = $2 RETURNING {_COLUMNS}""",
        journey.workspace_id,
        journey.journey_id,
        version,
        definition,
        etag,
        next_run_at,
        run_key,
    )
    return _journey(row)


async def set_state(conn: asyncpg.Connection, workspace_id: str, journey_id: str, state: str, etag: str) -> Journey:
    row = await conn.fetchrow(
        f"""UPDATE journeys SET state = $3, etag = $4, updated_at = now() WHERE workspace_id = $1 AND journey_id = $2
            RETURNING {_COLUMNS}""",
        workspace_id,
        journey_id,
        state,
        etag,
    )
    return _journey(row)


async def live_journey_versions(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every published version of the active and paused journeys (what the consumers look at)."""
    return await conn.fetch(
        """SELECT j.workspace_id, j.journey_id, j.state, j.version AS current_version, v.version, v.definition
           FROM journeys j JOIN journey_versions v USING (workspace_id, journey_id)
           WHERE j.state IN ('active', 'paused')"""
    )


async def version_definition(conn: asyncpg.Connection, workspace_id: str, journey_id: str, version: int) -> dict | None:
    return await conn.fetchval(
        "SELECT definition FROM journey_versions WHERE workspace_id = $1 AND journey_id = $2 AND version = $3",
        workspace_id,
        journey_id,
        version,
    )


_RUN_COLUMNS = "workspace_id, journey_id, version, next_run_at, run_key, run_cursor"


async def due_journey_runs(conn: asyncpg.Connection, now: datetime, limit: int) -> list[asyncpg.Record]:
    """A look (no lock) at up to ``limit`` active journeys whose scheduled or date run is due."""
    return await conn.fetch(
        f"""SELECT {_RUN_COLUMNS} FROM journeys WHERE next_run_at <= $1 AND state = 'active'
            ORDER BY next_run_at LIMIT $2""",
        now,
        limit,
    )


async def lock_run(conn: asyncpg.Connection, run: asyncpg.Record) -> bool:
    """Locks the journey for this transaction if its run is still where ``run`` (a look) saw it:
    the same version, due time, key and page. False when another scheduler holds it or went on
    meanwhile (what was read for that page is then not applied), or the journey stopped."""
    found = await conn.fetchval(
        """SELECT true FROM journeys WHERE workspace_id = $1 AND journey_id = $2 AND state = 'active'
           AND version = $3 AND next_run_at = $4 AND run_key = $5 AND run_cursor = $6 FOR UPDATE SKIP LOCKED""",
        run["workspace_id"],
        run["journey_id"],
        run["version"],
        run["next_run_at"],
        run["run_key"],
        run["run_cursor"],
    )
    return bool(found)


async def save_run(
    conn: asyncpg.Connection, workspace_id: str, journey_id: str, *, next_run_at, run_key: str, run_cursor: str
) -> None:
    await conn.execute(
        """UPDATE journeys SET next_run_at = $3, run_key = $4, run_cursor = $5 WHERE workspace_id = $1
           AND journey_id = $2""",
        workspace_id,
        journey_id,
        next_run_at,
        run_key,
        run_cursor,
    )


# Instances

INSTANCE_COLUMNS = (
    "workspace_id, instance_id, journey_id, version, person_id, trigger_key, state, step_id, phase, wake_at, "
    "wait_event, variant, context, events_seen, exit_reason, entered_at, step_entered_at, goal_deadline, "
    "converted_at, conversion_step, revenue_minor"
)


async def lock_enrolment(conn: asyncpg.Connection, workspace_id: str, journey_id: str, person_id: str) -> None:
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"enrol/{workspace_id}/{journey_id}/{person_id}"
    )


async def latest_entry(
    conn: asyncpg.Connection, workspace_id: str, journey_id: str, person_id: str
) -> asyncpg.Record | None:
    """Whether the person runs the journey now (``active``) and when they last entered it
    (``entered_at``, of any instance: a newer completed entry counts for the minimum interval)."""
    return await conn.fetchrow(
        """SELECT bool_or(state = 'active') AS active, max(entered_at) AS entered_at FROM instances
           WHERE workspace_id = $1 AND journey_id = $2 AND person_id = $3 HAVING count(*) > 0""",
        workspace_id,
        journey_id,
        person_id,
    )


async def never_enrolled(conn: asyncpg.Connection, workspace_id: str, journey_id: str, persons: list[str]) -> list[str]:
    """Those of ``persons`` with no instance of the journey, ever, in the given order."""
    rows = await conn.fetch(
        """SELECT DISTINCT person_id FROM instances WHERE workspace_id = $1 AND journey_id = $2
           AND person_id = ANY($3::text[])""",
        workspace_id,
        journey_id,
        persons,
    )
    enrolled = {r["person_id"] for r in rows}
    return [p for p in persons if p not in enrolled]


async def insert_instance(conn: asyncpg.Connection, values: dict[str, Any]) -> bool:
    status = await conn.execute(
        """INSERT INTO instances (workspace_id, instance_id, journey_id, version, person_id, trigger_key, step_id,
               wake_at, context, entered_at, step_entered_at, goal_deadline)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8, $8, $10) ON CONFLICT DO NOTHING""",
        values["workspace_id"],
        values["instance_id"],
        values["journey_id"],
        values["version"],
        values["person_id"],
        values["trigger_key"],
        values["step_id"],
        values["now"],
        values["context"],
        values["goal_deadline"],
    )
    return status.endswith(" 1")


async def due_instances(conn: asyncpg.Connection, now: datetime, limit: int) -> list[dict]:
    """Due instances not claimed by a scheduler run (or whose claim ran out), locked."""
    rows = await conn.fetch(
        f"""SELECT {INSTANCE_COLUMNS} FROM instances
            WHERE wake_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)
            ORDER BY wake_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
        now,
        limit,
    )
    return [dict(r) for r in rows]


async def claim_instances(conn: asyncpg.Connection, instances: list[dict], claim, claimed_until: datetime) -> None:
    """These instances belong to one scheduler run until ``claimed_until``; ``wake_at`` stays (they
    still count as due while they run)."""
    if instances:
        await conn.execute(
            """UPDATE instances SET claim = $3, claimed_until = $4
               WHERE (workspace_id, instance_id) IN (SELECT * FROM unnest($1::text[], $2::uuid[]))""",
            [i["workspace_id"] for i in instances],
            [i["instance_id"] for i in instances],
            claim,
            claimed_until,
        )


async def claimed_instances(conn: asyncpg.Connection, claim) -> list[dict]:
    """The instances a scheduler run still holds, as stored now, locked."""
    rows = await conn.fetch(
        f"SELECT {INSTANCE_COLUMNS} FROM instances WHERE claim = $1 ORDER BY wake_at NULLS LAST FOR UPDATE", claim
    )
    return [dict(r) for r in rows]


async def release_instances(conn: asyncpg.Connection, claim) -> None:
    await conn.execute("UPDATE instances SET claim = NULL, claimed_until = NULL WHERE claim = $1", claim)


async def waits_for(conn: asyncpg.Connection, workspace_id: str, person_id: str, event: str) -> list[dict]:
    """The person's instances waiting for ``event``, and those about to start a step (which may be
    such a wait)."""
    rows = await conn.fetch(
        f"""SELECT {INSTANCE_COLUMNS} FROM instances WHERE workspace_id = $1 AND person_id = $2
            AND state = 'active' AND ((phase = 'waiting' AND wait_event = $3) OR phase = 'ready') FOR UPDATE""",
        workspace_id,
        person_id,
        event,
    )
    return [dict(r) for r in rows]


async def goal_candidates(conn: asyncpg.Connection, workspace_id: str, person_id: str, now: datetime) -> list[dict]:
    rows = await conn.fetch(
        f"""SELECT {INSTANCE_COLUMNS} FROM instances WHERE workspace_id = $1 AND person_id = $2
            AND converted_at IS NULL AND goal_deadline >= $3 AND entered_at <= $3 FOR UPDATE""",
        workspace_id,
        person_id,
        now,
    )
    return [dict(r) for r in rows]


async def save_instance(conn: asyncpg.Connection, inst: dict) -> None:
    await conn.execute(
        """UPDATE instances SET state = $3, step_id = $4, phase = $5, wake_at = $6, wait_event = $7, variant = $8,
               context = $9, exit_reason = $10, step_entered_at = $11, converted_at = $12, conversion_step = $13,
               revenue_minor = $14, updated_at = now()
           WHERE workspace_id = $1 AND instance_id = $2""",
        inst["workspace_id"],
        inst["instance_id"],
        inst["state"],
        inst["step_id"],
        inst["phase"],
        inst["wake_at"],
        inst["wait_event"],
        inst["variant"],
        inst["context"],
        inst["exit_reason"],
        inst["step_entered_at"],
        inst["converted_at"],
        inst["conversion_step"],
        inst["revenue_minor"],
    )


async def note_event(
    conn: asyncpg.Connection, workspace_id: str, person_id: str, journey_ids: list[str], name: str, at: datetime
) -> None:
    await conn.execute(
        """UPDATE instances SET events_seen = events_seen || $4::jsonb
           WHERE workspace_id = $1 AND person_id = $2 AND state = 'active' AND journey_id = ANY($3::text[])""",
        workspace_id,
        person_id,
        journey_ids,
        json.dumps([{"name": name, "at": at.isoformat()}]),
    )


async def list_instances(
    conn: asyncpg.Connection, workspace_id: str, journey_id: str, *, person_id: str, after: str, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT {INSTANCE_COLUMNS} FROM instances WHERE workspace_id = $1 AND journey_id = $2
            AND {_THIS_JOURNEY} AND ($3 = '' OR person_id = $3) AND ($4 = '' OR instance_id::text < $4)
            ORDER BY instance_id::text DESC LIMIT $5""",
        workspace_id,
        journey_id,
        person_id,
        after,
        limit,
    )


async def rekey_person(
    conn: asyncpg.Connection, workspace_id: str, survivor: str, merged: str
) -> tuple[int, list[dict]]:
    """Moves everything of ``merged`` to ``survivor``; one enrolment of the two persons goes on
    where the journey allows one: an enrolment both hold (same key: ``once``, a broadcast run) is
    kept once, and where the survivor is running the journey, the merged person's running
    instance of it exits too unless the journey re-enters ``always``. Those instances exit with
    reason ``merged`` (if still running) and their pending deliveries (also those of a completed
    instance whose message waits out quiet hours) are suppressed, reason ``merged``.
    Returns how many instances moved and the suppressed deliveries."""
    exited = await conn.fetch(
        """UPDATE instances m SET trigger_key = m.trigger_key || '#merged:' || m.person_id,
               -- kept for a split that gives the instance back (move_instances_back)
               context = CASE WHEN m.state = 'active'
                   THEN m.context || jsonb_build_object('merged_wake_at', m.wake_at) ELSE m.context END,
               state = CASE WHEN m.state = 'active' THEN 'exited' ELSE m.state END,
               exit_reason = CASE WHEN m.state = 'active' THEN 'merged' ELSE m.exit_reason END,
               wake_at = CASE WHEN m.state = 'active' THEN NULL ELSE m.wake_at END,
               updated_at = now()
           WHERE m.workspace_id = $1 AND m.person_id = $3
           AND (EXISTS (SELECT 1 FROM instances s WHERE s.workspace_id = $1 AND s.person_id = $2
                        AND s.journey_id = m.journey_id AND s.trigger_key = m.trigger_key)
                OR (m.state = 'active'
                    AND coalesce((SELECT v.definition -> 'reentry' ->> 'mode' FROM journey_versions v
                                   WHERE v.workspace_id = $1 AND v.journey_id = m.journey_id
                                   AND v.version = m.version), '') <> 'always'
                    AND EXISTS (SELECT 1 FROM instances s WHERE s.workspace_id = $1 AND s.person_id = $2
                                AND s.journey_id = m.journey_id AND s.state = 'active')))
           RETURNING m.instance_id""",
        workspace_id,
        survivor,
        merged,
    )
    ended = [r["instance_id"] for r in exited]
    suppressed = await conn.fetch(
        f"""UPDATE deliveries SET status = 'suppressed', reason = 'merged', updated_at = now()
            WHERE workspace_id = $1 AND instance_id = ANY($2::uuid[]) AND status = 'pending'
            RETURNING {DELIVERY_COLUMNS}""",
        workspace_id,
        ended,
    )
    moved = await conn.execute(
        """UPDATE instances SET person_id = $2, origin_person_id = coalesce(origin_person_id, person_id)
           WHERE workspace_id = $1 AND person_id = $3""",
        workspace_id,
        survivor,
        merged,
    )
    await conn.execute(
        "UPDATE deliveries SET person_id = $2 WHERE workspace_id = $1 AND person_id = $3",
        workspace_id,
        survivor,
        merged,
    )
    await conn.execute(
        """UPDATE coupon_codes c SET person_id = $2 WHERE c.workspace_id = $1 AND c.person_id = $3
           AND NOT EXISTS (SELECT 1 FROM coupon_codes s WHERE s.workspace_id = $1 AND s.person_id = $2
                           AND s.journey_id = c.journey_id)""",
        workspace_id,
        survivor,
        merged,
    )
    await merge_person_dates(conn, workspace_id, survivor, merged)
    return int(moved.split()[-1]), [dict(r) for r in suppressed]


async def merge_person_dates(conn: asyncpg.Connection, workspace_id: str, survivor: str, merged: str) -> None:
    """The merged person's date attributes fill in what the survivor's row lacks (its birthday
    if the survivor has none, the earlier points expiry) until profile announces the merged
    profile; the survivor's version stays (a new row gets 0: any announcement of the survivor
    decides). The merged person's row goes."""
    await conn.execute(
        """WITH gone AS (
               DELETE FROM person_dates WHERE workspace_id = $1 AND person_id = $3
               RETURNING birthday_month_day, points_expiry_at)
           INSERT INTO person_dates AS s
               (workspace_id, person_id, birthday_month_day, points_expiry_at, profile_version)
           SELECT $1, $2, birthday_month_day, points_expiry_at, 0 FROM gone
           WHERE birthday_month_day IS NOT NULL OR points_expiry_at IS NOT NULL
           ON CONFLICT (workspace_id, person_id) DO UPDATE SET
               birthday_month_day = coalesce(s.birthday_month_day, EXCLUDED.birthday_month_day),
               points_expiry_at = least(s.points_expiry_at, EXCLUDED.points_expiry_at)""",
        workspace_id,
        survivor,
        merged,
    )


async def _move_instances(conn: asyncpg.Connection, workspace_id: str, to_person: str, where: str, *args) -> list:
    """Moves the instances ``where`` selects (with their deliveries and coupon codes) to
    ``to_person``; an instance whose enrolment key that person already holds stays. Returns the
    ids moved."""
    moved = await conn.fetch(
        f"""UPDATE instances m SET person_id = $2,
                origin_person_id = CASE WHEN m.origin_person_id = $2 THEN NULL ELSE m.origin_person_id END
            WHERE m.workspace_id = $1 AND {where} AND NOT EXISTS (
                SELECT 1 FROM instances s WHERE s.workspace_id = $1 AND s.person_id = $2
                AND s.journey_id = m.journey_id AND s.trigger_key = m.trigger_key)
            RETURNING m.instance_id""",
        workspace_id,
        to_person,
        *args,
    )
    ids = [r["instance_id"] for r in moved]
    if ids:
        await conn.execute(
            "UPDATE deliveries SET person_id = $2 WHERE workspace_id = $1 AND instance_id = ANY($3::uuid[])",
            workspace_id,
            to_person,
            ids,
        )
        await conn.execute(
            """UPDATE coupon_codes c SET person_id = $2 WHERE c.workspace_id = $1 AND c.instance_id = ANY($3::uuid[])
               AND NOT EXISTS (SELECT 1 FROM coupon_codes s WHERE s.workspace_id = $1 AND s.person_id = $2
                               AND s.journey_id = c.journey_id)""",
            workspace_id,
            to_person,
            ids,
        )
    return ids


async def move_instances_back(
    conn: asyncpg.Connection, workspace_id: str, person_id: str, new_person_id: str, origins: list[str], now
) -> int:
    """A split: ``person_id``'s instances that a merge brought from one of ``origins`` go to
    ``new_person_id``; those the merge ended (``merged``: the survivor ran the same journey) run
    again from where they were, woken when they would have been."""
    where = "m.person_id = $3 AND m.origin_person_id = ANY($4::text[])"
    moved = await _move_instances(conn, workspace_id, new_person_id, where, person_id, origins)
    await conn.execute(
        """UPDATE instances SET state = 'active', exit_reason = '', updated_at = now(),
               wake_at = coalesce((context ->> 'merged_wake_at')::timestamptz, $3), context = context - 'merged_wake_at'
           WHERE workspace_id = $1 AND instance_id = ANY($2::uuid[]) AND state = 'exited' AND exit_reason = 'merged'
           AND context ? 'merged_wake_at'""",
        workspace_id,
        moved,
        now,
    )
    return len(moved)


async def move_instances_of_events(
    conn: asyncpg.Connection, workspace_id: str, from_person: str, to_person: str, message_ids: list[str]
) -> int:
    """A split moved these events to ``to_person``: the instances they started follow them."""
    moved = await _move_instances(
        conn,
        workspace_id,
        to_person,
        "m.person_id = $3 AND m.context -> 'event' ->> 'message_id' = ANY($4::text[])",
        from_person,
        message_ids,
    )
    return len(moved)


# Deliveries

DELIVERY_COLUMNS = (
    "workspace_id, delivery_id, journey_id, version, instance_id, step_id, variant, person_id, channel, status, "
    "reason, attempts, deferrals, context, created_at, next_attempt_at, sent_at, updated_at"
)


async def insert_delivery(conn: asyncpg.Connection, values: dict[str, Any]) -> bool:
    status = await conn.execute(
        """INSERT INTO deliveries (workspace_id, delivery_id, journey_id, version, instance_id, step_id, variant,
               person_id, channel, context, created_at, next_attempt_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) ON CONFLICT DO NOTHING""",
        values["workspace_id"],
        values["delivery_id"],
        values["journey_id"],
        values["version"],
        values["instance_id"],
        values["step_id"],
        values["variant"],
        values["person_id"],
        values["channel"],
        values["context"],
        values["now"],
    )
    return status.endswith(" 1")


_DUE_DELIVERY = """status = 'pending' AND next_attempt_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1)"""


async def due_deliveries(conn: asyncpg.Connection, now: datetime, limit: int) -> list[dict]:
    """A look (no lock) at up to ``limit`` due deliveries no sender holds."""
    rows = await conn.fetch(
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {_DUE_DELIVERY} ORDER BY next_attempt_at LIMIT $2",
        now,
        limit,
    )
    return [dict(r) for r in rows]


async def claim_deliveries(
    conn: asyncpg.Connection, now: datetime, candidates: list[dict], claim, claimed_until: datetime
) -> list[dict]:
    """Claims those of ``candidates`` still due and free for one sender (``claim``) until
    ``claimed_until``, locked for this transaction. A row still claimed by a sender that died
    mid-send is due again once its claim ran out; ``resent``: that sender had started transmitting
    it (``transmitted_at``), so the provider may have it (it is sent again with the same key)."""
    rows = await conn.fetch(
        f"""WITH due AS (
                SELECT workspace_id, delivery_id, claim AS previous, transmitted_at FROM deliveries
                WHERE (workspace_id, delivery_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))
                AND {_DUE_DELIVERY} FOR UPDATE SKIP LOCKED)
            UPDATE deliveries d SET claim = $4, claimed_until = $5, sent_at = NULL, transmitted_at = NULL,
                updated_at = now()
            FROM due WHERE d.workspace_id = due.workspace_id AND d.delivery_id = due.delivery_id
            RETURNING {", ".join(f"d.{c.strip()}" for c in DELIVERY_COLUMNS.split(","))},
                due.previous IS NOT NULL AND due.transmitted_at IS NOT NULL AS resent""",
        now,
        [c["workspace_id"] for c in candidates],
        [c["delivery_id"] for c in candidates],
        claim,
        claimed_until,
    )
    return [dict(r) for r in rows]


async def lock_persons(conn: asyncpg.Connection, persons: list[tuple[str, str]]) -> None:
    """Transaction locks on these persons' sends, taken in one order (no deadlock between senders)."""
    await conn.execute(
        """SELECT pg_advisory_xact_lock(hashtextextended(k, 0))
           FROM (SELECT DISTINCT unnest($1::text[]) AS k ORDER BY 1) AS keys""",
        [f"send/{workspace_id}/{person_id}" for workspace_id, person_id in persons],
    )


async def sent_counts(
    conn: asyncpg.Connection, keys: list[tuple[str, str, str]], now: datetime
) -> dict[tuple[str, str, str], dict[str, tuple[int, int]]]:
    """Messages sent in the last 24 hours and 7 days per (workspace, person, channel), by journey."""
    rows = await conn.fetch(
        """SELECT d.workspace_id, d.person_id, d.channel, d.journey_id,
                  count(*) FILTER (WHERE d.sent_at > $4::timestamptz - interval '1 day') AS day, count(*) AS week
           FROM deliveries d JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(w, p, c)
               ON d.workspace_id = k.w AND d.person_id = k.p AND d.channel = k.c
           WHERE d.sent_at > $4::timestamptz - interval '7 days' AND d.sent_at <= $4
           GROUP BY 1, 2, 3, 4""",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        now,
    )
    counts: dict[tuple[str, str, str], dict[str, tuple[int, int]]] = {}
    for r in rows:
        counts.setdefault((r["workspace_id"], r["person_id"], r["channel"]), {})[r["journey_id"]] = (
            r["day"],
            r["week"],
        )
    return counts


async def mark_transmitting(conn: asyncpg.Connection, rows: list[dict], claim, now: datetime) -> None:
    """These messages (held by ``claim``) may reach their provider from this commit on."""
    if rows:
        await conn.execute(
            """UPDATE deliveries SET transmitted_at = $4
               WHERE (workspace_id, delivery_id) IN (SELECT * FROM unnest($1::text[], $2::text[])) AND claim = $3""",
            [r["workspace_id"] for r in rows],
            [r["delivery_id"] for r in rows],
            claim,
            now,
        )


async def save_deliveries(conn: asyncpg.Connection, rows: list[dict], *, claim=None) -> set[str]:
    """Writes the rows' new state; with ``claim``, only rows that sender still holds (a sender
    whose claim ran out and was taken over writes nothing). ``row["claim"]`` is kept (a message
    being sent) or cleared. Returns the delivery ids written."""
    if not rows:
        return set()
    written = await conn.fetch(
        """UPDATE deliveries d SET status = u.status, reason = u.reason, attempts = u.attempts,
               deferrals = u.deferrals, next_attempt_at = u.next_attempt_at, sent_at = u.sent_at,
               claim = u.claim, claimed_until = CASE WHEN u.claim IS NULL THEN NULL ELSE d.claimed_until END,
               transmitted_at = CASE WHEN u.claim IS NULL THEN NULL ELSE d.transmitted_at END,
               updated_at = now()
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::timestamptz[],
                       $8::timestamptz[], $9::uuid[])
               AS u(w, id, status, reason, attempts, deferrals, next_attempt_at, sent_at, claim)
           WHERE d.workspace_id = u.w AND d.delivery_id = u.id AND ($10::uuid IS NULL OR d.claim = $10)
           RETURNING d.delivery_id""",
        [r["workspace_id"] for r in rows],
        [r["delivery_id"] for r in rows],
        [r["status"] for r in rows],
        [r["reason"] for r in rows],
        [r["attempts"] for r in rows],
        [r["deferrals"] for r in rows],
        [r["next_attempt_at"] for r in rows],
        [r["sent_at"] for r in rows],
        [r.get("claim") for r in rows],
        claim,
    )
    return {r["delivery_id"] for r in written}


async def get_delivery(
    conn: asyncpg.Connection, workspace_id: str, journey_id: str, delivery_id: str, *, for_update: bool = False
) -> dict | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"""SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE workspace_id = $1 AND journey_id = $2
            AND delivery_id = $3{lock}""",
        workspace_id,
        journey_id,
        delivery_id,
    )
    return dict(row) if row else None


async def list_deliveries(
    conn: asyncpg.Connection, workspace_id: str, journey_id: str, *, status: str, after: str, limit: int
) -> list[dict]:
    rows = await conn.fetch(
        f"""SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE workspace_id = $1
            AND ($2 = '-' OR (journey_id = $2 AND {_THIS_JOURNEY})) AND ($3 = '' OR status = $3)
            AND delivery_id > $4 ORDER BY delivery_id LIMIT $5""",
        workspace_id,
        journey_id,
        status,
        after,
        limit,
    )
    return [dict(r) for r in rows]


async def person_deliveries(
    conn: asyncpg.Connection, workspace_id: str, person_id: str, *, before: tuple[datetime, str] | None, limit: int
) -> list[dict]:
    """A person's deliveries, newest first, those older than ``before`` (created_at, delivery_id)."""
    rows = await conn.fetch(
        f"""SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE workspace_id = $1 AND person_id = $2
            AND ($3::timestamptz IS NULL OR (created_at, delivery_id) < ($3::timestamptz, $4::text))
            ORDER BY created_at DESC, delivery_id DESC LIMIT $5""",
        workspace_id,
        person_id,
        before[0] if before else None,
        before[1] if before else "",
        limit,
    )
    return [dict(r) for r in rows]


async def last_sent_step(conn: asyncpg.Connection, workspace_id: str, instance_id) -> str:
    return (
        await conn.fetchval(
            """SELECT step_id FROM deliveries WHERE workspace_id = $1 AND instance_id = $2
               AND status IN ('sent', 'delivered') ORDER BY sent_at DESC LIMIT 1""",
            workspace_id,
            instance_id,
        )
        or ""
    )


# Coupons


async def insert_pool(conn: asyncpg.Connection, values: dict[str, Any]) -> bool:
    status = await conn.execute(
        """INSERT INTO coupon_pools (workspace_id, pool_id, display_name, kind, prefix, code_length)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
        values["workspace_id"],
        values["pool_id"],
        values["display_name"],
        values["kind"],
        values["prefix"],
        values["code_length"],
    )
    return status.endswith(" 1")


_POOL_SELECT = """SELECT p.workspace_id, p.pool_id, p.display_name, p.kind, p.prefix, p.code_length, p.created_at,
       (SELECT count(*) FROM coupon_codes c WHERE c.workspace_id = p.workspace_id AND c.pool_id = p.pool_id) AS total,
       (SELECT count(*) FROM coupon_codes c WHERE c.workspace_id = p.workspace_id AND c.pool_id = p.pool_id
            AND c.person_id IS NOT NULL) AS issued,
       (SELECT count(*) FROM coupon_codes c WHERE c.workspace_id = p.workspace_id AND c.pool_id = p.pool_id
            AND c.redeemed_at IS NOT NULL) AS redeemed
   FROM coupon_pools p"""


async def get_pool(conn: asyncpg.Connection, workspace_id: str, pool_id: str) -> dict | None:
    row = await conn.fetchrow(f"{_POOL_SELECT} WHERE p.workspace_id = $1 AND p.pool_id = $2", workspace_id, pool_id)
    return dict(row) if row else None


async def list_pools(conn: asyncpg.Connection, workspace_id: str, *, after: str, limit: int) -> list[dict]:
    rows = await conn.fetch(
        f"{_POOL_SELECT} WHERE p.workspace_id = $1 AND p.pool_id > $2 ORDER BY p.pool_id LIMIT $3",
        workspace_id,
        after,
        limit,
    )
    return [dict(r) for r in rows]


async def import_codes(conn: asyncpg.Connection, workspace_id: str, pool_id: str, codes: list[str]) -> int:
    status = await conn.execute(
        """INSERT INTO coupon_codes (workspace_id, pool_id, code)
           SELECT $1, $2, code FROM unnest($3::text[]) AS code ON CONFLICT DO NOTHING""",
        workspace_id,
        pool_id,
        codes,
    )
    return int(status.split()[-1])


async def lock_coupon(conn: asyncpg.Connection, workspace_id: str, journey_id: str, person_id: str) -> None:
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"coupon/{workspace_id}/{journey_id}/{person_id}"
    )


async def issued_code(conn: asyncpg.Connection, workspace_id: str, journey_id: str, person_id: str) -> str | None:
    return await conn.fetchval(
        "SELECT code FROM coupon_codes WHERE workspace_id = $1 AND journey_id = $2 AND person_id = $3",
        workspace_id,
        journey_id,
        person_id,
    )


async def claim_code(
    conn: asyncpg.Connection, workspace_id: str, pool_id: str, journey_id: str, person_id: str, instance_id, now
) -> str | None:
    return await conn.fetchval(
        """UPDATE coupon_codes SET person_id = $4, journey_id = $3, instance_id = $5, issued_at = $6
           WHERE (workspace_id, pool_id, code) = (
               SELECT workspace_id, pool_id, code FROM coupon_codes WHERE workspace_id = $1 AND pool_id = $2
               AND person_id IS NULL ORDER BY code LIMIT 1 FOR UPDATE SKIP LOCKED)
           RETURNING code""",
        workspace_id,
        pool_id,
        journey_id,
        person_id,
        instance_id,
        now,
    )


async def insert_issued_code(
    conn: asyncpg.Connection,
    workspace_id: str,
    pool_id: str,
    code: str,
    journey_id: str,
    person_id: str,
    instance_id,
    now,
) -> bool:
    status = await conn.execute(
        """INSERT INTO coupon_codes (workspace_id, pool_id, code, person_id, journey_id, instance_id, issued_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (workspace_id, pool_id, code) DO NOTHING""",
        workspace_id,
        pool_id,
        code,
        person_id,
        journey_id,
        instance_id,
        now,
    )
    return status.endswith(" 1")


async def redeem_code(conn: asyncpg.Connection, workspace_id: str, code: str, message_id: str, now) -> int:
    status = await conn.execute(
        """UPDATE coupon_codes SET redeemed_at = $4, redeemed_by = $3
           WHERE workspace_id = $1 AND code = $2 AND person_id IS NOT NULL AND redeemed_at IS NULL""",
        workspace_id,
        code,
        message_id,
        now,
    )
    return int(status.split()[-1])


# Settings and dates


async def get_settings(conn: asyncpg.Connection, workspace_id: str) -> WorkspaceSettings:
    row = await conn.fetchrow(
        """SELECT workspace_id, quiet_hours_start, quiet_hours_end, cap_per_day, cap_per_week,
                  consent_mode, updated_at FROM workspace_settings WHERE workspace_id = $1""",
        workspace_id,
    )
    return WorkspaceSettings(**dict(row)) if row else WorkspaceSettings(workspace_id)


async def save_settings(conn: asyncpg.Connection, s: WorkspaceSettings) -> WorkspaceSettings:
    row = await conn.fetchrow(
        """INSERT INTO workspace_settings (workspace_id, quiet_hours_start, quiet_hours_end, cap_per_day,
               cap_per_week, consent_mode, updated_at) VALUES ($1, $2, $3, $4, $5, $6, now())
           ON CONFLICT (workspace_id) DO UPDATE SET quiet_hours_start = $2, quiet_hours_end = $3,
               cap_per_day = $4, cap_per_week = $5, consent_mode = $6, updated_at = now()
           RETURNING workspace_id, quiet_hours_start, quiet_hours_end, cap_per_day, cap_per_week,
               consent_mode, updated_at""",
        s.workspace_id,
        s.quiet_hours_start,
        s.quiet_hours_end,
        s.cap_per_day,
        s.cap_per_week,
        s.consent_mode,
    )
    return WorkspaceSettings(**dict(row))


async def upsert_person_dates(
    conn: asyncpg.Connection, workspace_id: str, person_id: str, birthday: str | None, expiry, version: int
) -> None:
    await conn.execute(
        """INSERT INTO person_dates (workspace_id, person_id, birthday_month_day, points_expiry_at, profile_version)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (workspace_id, person_id) DO UPDATE SET birthday_month_day = $3, points_expiry_at = $4,
               profile_version = $5
           WHERE person_dates.profile_version < $5 AND (person_dates.birthday_month_day IS DISTINCT FROM $3
                 OR person_dates.points_expiry_at IS DISTINCT FROM $4)""",
        workspace_id,
        person_id,
        birthday,
        expiry,
        version,
    )


async def forget_person_dates(conn: asyncpg.Connection, workspace_id: str, person_id: str, version: int) -> None:
    """The person has no date attributes any more (as of profile ``version``). The row stays,
    emptied, with its version: a replayed older change cannot bring the old dates back."""
    await conn.execute(
        """UPDATE person_dates SET birthday_month_day = NULL, points_expiry_at = NULL, profile_version = $3
           WHERE workspace_id = $1 AND person_id = $2 AND profile_version < $3""",
        workspace_id,
        person_id,
        version,
    )


async def persons_with_birthday(conn: asyncpg.Connection, workspace_id: str, month_days: list[str]) -> list[str]:
    rows = await conn.fetch(
        "SELECT person_id FROM person_dates WHERE workspace_id = $1 AND birthday_month_day = ANY($2::text[])",
        workspace_id,
        month_days,
    )
    return [r["person_id"] for r in rows]


async def persons_with_expiry(conn: asyncpg.Connection, workspace_id: str, start: datetime) -> list[str]:
    rows = await conn.fetch(
        """SELECT person_id FROM person_dates WHERE workspace_id = $1 AND points_expiry_at >= $2
           AND points_expiry_at < $3""",
        workspace_id,
        start,
        start + timedelta(days=1),
    )
    return [r["person_id"] for r in rows]


# Reports


async def report_instances(conn: asyncpg.Connection, workspace_id: str, journey_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT variant, count(*) AS entered, count(converted_at) AS converted,
                  coalesce(sum(revenue_minor), 0)::bigint AS revenue
           FROM instances WHERE workspace_id = $1 AND journey_id = $2 AND {_THIS_JOURNEY} GROUP BY variant""",
        workspace_id,
        journey_id,
    )


async def report_conversions_by_step(
    conn: asyncpg.Connection, workspace_id: str, journey_id: str
) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT conversion_step AS step_id, variant, count(*) AS converted,
                  coalesce(sum(revenue_minor), 0)::bigint AS revenue
           FROM instances WHERE workspace_id = $1 AND journey_id = $2 AND {_THIS_JOURNEY}
           AND converted_at IS NOT NULL AND conversion_step <> '' GROUP BY conversion_step, variant""",
        workspace_id,
        journey_id,
    )


async def report_deliveries(conn: asyncpg.Connection, workspace_id: str, journey_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"""SELECT step_id, variant, status, reason, count(*) AS n FROM deliveries
           WHERE workspace_id = $1 AND journey_id = $2 AND {_THIS_JOURNEY} GROUP BY step_id, variant, status, reason""",
        workspace_id,
        journey_id,
    )


async def report_coupons(conn: asyncpg.Connection, workspace_id: str, journey_id: str) -> tuple[int, int]:
    row = await conn.fetchrow(
        """SELECT count(*) AS issued, count(redeemed_at) AS redeemed FROM coupon_codes
           WHERE workspace_id = $1 AND journey_id = $2""",
        workspace_id,
        journey_id,
    )
    return row["issued"], row["redeemed"]
