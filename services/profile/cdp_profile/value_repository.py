"""SQL of customer value: order summaries, fitted models, predictions, recompute jobs.

Workspace-wide statements get WORKSPACE_TIMEOUT instead of the pool's 30 s (a recompute of a
million customers reads and writes a million rows per statement).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg
import numpy as np

from cdp_profile import copy_binary

WORKSPACE_TIMEOUT = 600.0
# An announcing lane's bounds when it has none: rows after the nil UUID, up to the all-ones one.
NO_PERSON_BEFORE = "00000000-0000-0000-0000-000000000000"
NO_PERSON_AFTER = "ffffffff-ffff-ffff-ffff-ffffffffffff"
# First key of the session advisory lock a running recompute holds on its workspace.
RECOMPUTE_LOCK = 0x76616C75

SUMMARY_COLUMNS = (
    ("person_id", "uuid"),
    ("repeat_days", "int4"),
    ("recency_days", "int4"),
    ("age_days", "int4"),
    ("total_minor", "int8"),
    ("first_day_minor", "int8"),
)
FRESH_COLUMNS = (
    ("person_id", "uuid"),
    ("p_alive", "float8"),
    ("expected_purchases", "float8"),
    ("expected_order_value_minor", "int8"),
    ("predicted_clv_minor", "int8"),
)


# Summaries ------------------------------------------------------------------------------------


async def order_summaries(
    conn: asyncpg.Connection,
    workspace_id: str,
    *,
    time_zone: str,
    currency: str,
    calibration_end: date,
    before: datetime,
) -> np.ndarray:
    """Per customer, from the counted orders in ``currency`` placed before ``before`` (the end of
    the calibration day): purchase days after the first (customer-day aggregation: one day's
    orders are one purchase, amounts net of refunds added), days from the first purchase day to
    the last and to the calibration end, the total and the first day's amount. One structured
    array (SUMMARY_COLUMNS), read through binary COPY."""
    buffer = io.BytesIO()
    await conn.execute("SET LOCAL work_mem = '256MB'")
    # Nearly every (customer, day) is its own group: hashed, they fill memory, spill, and must
    # be sorted by customer afterwards anyway. Sorted once by (customer, day), both aggregations
    # stream (with parallel workers when the planner likes). 1M customers, 3.4M orders: 26-33 s
    # -> 11-15 s at load 8.
    await conn.execute("SET LOCAL enable_hashagg = off")
    await conn.copy_from_query(
        """WITH days AS (
               SELECT person_id, (order_time AT TIME ZONE $2)::date AS day, sum(total_minor - refunded_minor) AS amount
               FROM orders
               WHERE workspace_id = $1 AND status IN ('completed', 'partially_refunded') AND currency = $3
                 AND order_time < $4
               GROUP BY person_id, day
           )
           SELECT person_id, (count(*) - 1)::int4, (max(day) - min(day))::int4, ($5::date - min(day))::int4,
                  sum(amount)::int8, ((array_agg(amount ORDER BY day))[1])::int8
           FROM days GROUP BY person_id""",
        workspace_id,
        time_zone,
        currency,
        before,
        calibration_end,
        output=buffer,
        format="binary",
        timeout=WORKSPACE_TIMEOUT,
    )
    return copy_binary.decode(buffer.getbuffer(), SUMMARY_COLUMNS)


# Models ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueModelRow:
    workspace_id: str
    model_id: int
    job_id: str
    fit_time: datetime
    calibration_end: date
    time_zone: str
    currency: str
    customers: int
    repeat_customers: int
    bgnbd_r: float
    bgnbd_alpha: float
    bgnbd_a: float
    bgnbd_b: float
    bgnbd_log_likelihood: float
    gg_p: float | None
    gg_q: float | None
    gg_gamma: float | None
    gg_log_likelihood: float | None
    gg_customers: int
    horizon_weeks: int
    clv_months: int
    monthly_discount_rate: float


_MODEL_FIELDS = ", ".join(ValueModelRow.__dataclass_fields__)


async def insert_model(conn: asyncpg.Connection, model: ValueModelRow) -> None:
    values = [getattr(model, name) for name in ValueModelRow.__dataclass_fields__]
    placeholders = ", ".join(f"${i + 1}" for i in range(len(values)))
    await conn.execute(f"INSERT INTO value_models ({_MODEL_FIELDS}) VALUES ({placeholders})", *values)


async def next_model_id(conn: asyncpg.Connection, workspace_id: str) -> int:
    return await conn.fetchval(
        "SELECT coalesce(max(model_id), 0) + 1 FROM value_models WHERE workspace_id = $1", workspace_id
    )


async def get_model(conn: asyncpg.Connection, workspace_id: str, model_id: int | None) -> ValueModelRow | None:
    """A model by id, or the latest one (None)."""
    row = await conn.fetchrow(
        f"""SELECT {_MODEL_FIELDS} FROM value_models
            WHERE workspace_id = $1 AND ($2::bigint IS NULL OR model_id = $2)
            ORDER BY model_id DESC LIMIT 1""",
        workspace_id,
        model_id,
    )
    return ValueModelRow(**dict(row)) if row else None


async def list_models(
    conn: asyncpg.Connection, workspace_id: str, before: int | None, limit: int
) -> list[ValueModelRow]:
    rows = await conn.fetch(
        f"""SELECT {_MODEL_FIELDS} FROM value_models
            WHERE workspace_id = $1 AND ($2::bigint IS NULL OR model_id < $2)
            ORDER BY model_id DESC LIMIT $3""",
        workspace_id,
        before,
        limit,
    )
    return [ValueModelRow(**dict(r)) for r in rows]


# Predictions ----------------------------------------------------------------------------------


async def current_prediction_model(conn: asyncpg.Connection, workspace_id: str) -> int | None:
    """The model whose predictions are stored now (one at a time, outside a recompute's transaction)."""
    return await conn.fetchval("SELECT max(model_id) FROM predictions WHERE workspace_id = $1", workspace_id)


async def write_predictions(
    conn: asyncpg.Connection,
    workspace_id: str,
    model_id: int,
    previous_model_id: int | None,
    fresh: dict[str, np.ndarray],
    *,
    min_change: float,
    announce_all: bool,
    lanes: int,
) -> tuple[int, list[str]]:
    """Store the predictions of ``model_id`` (arrays named as FRESH_COLUMNS) and drop the
    previous model's; returns (rows marked to announce, persons whose predictions are gone).

    A row is marked to announce when it is new, when its previous announcement is still
    pending (marked, in a lane of the previous model, after the lane's cursor), when
    ``announce_all`` (the field names changed), or when a value moved materially from what was
    last announced: P(alive) by ``min_change`` or more, expected purchases and money by that
    share of the old value (at least 0.01 purchases, 100 minor units). The marked rows are split
    into ``lanes`` lanes of about as many rows (prediction_announce_lanes) and the previous
    models' lanes dropped.
    """
    await conn.execute(
        """CREATE TEMP TABLE fresh_predictions (person_id uuid, p_alive float8, expected_purchases float8,
                                                 expected_order_value_minor int8, predicted_clv_minor int8)
           ON COMMIT DROP"""
    )
    await conn.copy_to_table(
        "fresh_predictions",
        source=io.BytesIO(copy_binary.encode(FRESH_COLUMNS, fresh)),
        format="binary",
        timeout=WORKSPACE_TIMEOUT,
    )
    await conn.execute("SET LOCAL work_mem = '256MB'")
    await conn.execute(
        """INSERT INTO predictions (workspace_id, person_id, model_id, p_alive, expected_purchases,
                                    expected_order_value_minor, predicted_clv_minor, announced_p_alive,
                                    announced_expected_purchases, announced_order_value_minor, announced_clv_minor,
                                    announce)
           SELECT $1, f.person_id, $2, f.p_alive, f.expected_purchases, f.expected_order_value_minor,
                  f.predicted_clv_minor,
                  CASE WHEN m.moved THEN f.p_alive ELSE o.announced_p_alive END,
                  CASE WHEN m.moved THEN f.expected_purchases ELSE o.announced_expected_purchases END,
                  CASE WHEN m.moved THEN f.expected_order_value_minor ELSE o.announced_order_value_minor END,
                  CASE WHEN m.moved THEN f.predicted_clv_minor ELSE o.announced_clv_minor END,
                  m.moved OR ($6 AND o.announce AND EXISTS (
                      SELECT 1 FROM prediction_announce_lanes l
                      WHERE l.workspace_id = $1 AND l.model_id = $3 AND o.person_id > l.after
                        AND o.person_id <= l.through))
           FROM fresh_predictions f
           LEFT JOIN predictions o ON o.workspace_id = $1 AND o.model_id = $3 AND o.person_id = f.person_id
           CROSS JOIN LATERAL (SELECT
               $5 OR o.announced_p_alive IS NULL
               OR abs(f.p_alive - o.announced_p_alive) >= $4
               OR abs(f.expected_purchases - o.announced_expected_purchases)
                  >= greatest($4 * abs(o.announced_expected_purchases), 0.01)
               OR abs(f.expected_order_value_minor - o.announced_order_value_minor)
                  >= greatest($4 * abs(o.announced_order_value_minor), 100)
               OR abs(f.predicted_clv_minor - o.announced_clv_minor)
                  >= greatest($4 * abs(o.announced_clv_minor), 100)) AS m(moved)""",
        workspace_id,
        model_id,
        previous_model_id,
        min_change,
        announce_all,
        # Announcements pending: a marked row is looked up in the lanes only when there are lanes.
        previous_model_id is not None and bool(await announce_lanes(conn, workspace_id, previous_model_id)),
        timeout=WORKSPACE_TIMEOUT,
    )
    marked = await conn.fetchval(
        "SELECT count(*) FROM predictions WHERE workspace_id = $1 AND model_id = $2 AND announce",
        workspace_id,
        model_id,
        timeout=WORKSPACE_TIMEOUT,
    )
    gone = await conn.fetch(
        """SELECT o.person_id::text FROM predictions o
           WHERE o.workspace_id = $1 AND o.model_id = $2 AND o.announced_p_alive IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM fresh_predictions f WHERE f.person_id = o.person_id)""",
        workspace_id,
        previous_model_id,
        timeout=WORKSPACE_TIMEOUT,
    )
    await conn.execute(
        "DELETE FROM predictions WHERE workspace_id = $1 AND model_id < $2",
        workspace_id,
        model_id,
        timeout=WORKSPACE_TIMEOUT,
    )
    await conn.execute(
        "DELETE FROM prediction_announce_lanes WHERE workspace_id = $1 AND model_id < $2", workspace_id, model_id
    )
    if marked:
        # Lane k ends at the (k+1)/lanes-th marked person (an index scan of the marked rows).
        bounds = [
            await conn.fetchval(
                """SELECT person_id FROM predictions WHERE workspace_id = $1 AND model_id = $2 AND announce
                   ORDER BY person_id OFFSET $3 LIMIT 1""",
                workspace_id,
                model_id,
                marked * k // lanes - 1,
                timeout=WORKSPACE_TIMEOUT,
            )
            for k in range(1, lanes)
            if marked * k // lanes > 0
        ]
        await conn.execute(
            """INSERT INTO prediction_announce_lanes (workspace_id, model_id, lane, after, through)
               SELECT $1, $2, n - 1, coalesce(lag(b) OVER (ORDER BY n), $4), coalesce(b, $5)
               FROM unnest($3::uuid[] || NULL::uuid) WITH ORDINALITY AS u(b, n)""",
            workspace_id,
            model_id,
            bounds,
            NO_PERSON_BEFORE,
            NO_PERSON_AFTER,
        )
    return marked, [r["person_id"] for r in gone]


async def announce_lanes(conn: asyncpg.Connection, workspace_id: str, model_id: int) -> list[int]:
    """The lanes of ``model_id`` with rows left to announce."""
    rows = await conn.fetch(
        "SELECT lane FROM prediction_announce_lanes WHERE workspace_id = $1 AND model_id = $2 ORDER BY lane",
        workspace_id,
        model_id,
    )
    return [r["lane"] for r in rows]


# A profile whose computed prediction traits were just set: person, new version, and the values
# (P(alive), churn risk and expected purchases rounded to 4 decimals, expected order value and
# CLV in minor units), in prediction order. Plain tuples: a million of them after a first fit.
Announced = tuple[str, int, tuple[float | int, ...]]


async def announce_next(
    conn: asyncpg.Connection,
    workspace_id: str,
    model_id: int,
    lane: int,
    limit: int,
    names: Sequence[str],
    removed: Sequence[str],
) -> tuple[int, list[Announced]]:
    """In the caller's transaction: lock the lane, then one statement takes its next ``limit``
    marked rows after the lane's cursor, in person order, moves the cursor past them, locks their
    profiles in person order (as the consumer does), sets the computed traits ``names`` (5, in
    Announced's order of values) to the announced_* values and removes ``removed``, and moves the
    versions on. Returns (rows taken, the profiles changed, in person order); a row without a
    profile is only passed over. Taking fewer than ``limit`` rows (the lane's last) deletes the
    lane; a lane that is gone takes none. Another transaction on the same lane waits for the
    lane's lock and continues after the cursor this one committed: nothing is announced twice.

    The values go from the predictions table to the profiles inside PostgreSQL: nothing per row
    crosses the connection but the result. The predictions rows are only read."""
    bounds = await conn.fetchrow(
        """SELECT after, through FROM prediction_announce_lanes
           WHERE workspace_id = $1 AND model_id = $2 AND lane = $3 FOR UPDATE""",
        workspace_id,
        model_id,
        lane,
    )
    if bounds is None:
        return 0, []
    rows = await conn.fetch(
        # The claim is materialised first: it is read twice (the profiles, the cursor). `locked`
        # locks the profiles as it emits them, in person order, whatever the plan. CTEs are
        # estimated at one row, so every join is driven by a CTE and probes an index (joining two
        # CTEs would be a quadratic loop).
        """WITH claimed AS MATERIALIZED (
               SELECT person_id FROM predictions
               WHERE workspace_id = $1 AND model_id = $2 AND announce AND person_id > $11 AND person_id <= $12
               ORDER BY person_id LIMIT $3),
           moved AS (
               UPDATE prediction_announce_lanes
               SET after = coalesce((SELECT person_id FROM claimed ORDER BY person_id DESC LIMIT 1), after)
               WHERE workspace_id = $1 AND model_id = $2 AND lane = $10
               RETURNING 1),
           locked AS (
               SELECT person_id FROM profiles
               WHERE workspace_id = $1 AND person_id IN (SELECT person_id FROM claimed)
               ORDER BY person_id FOR UPDATE),
           changed AS (
               UPDATE profiles AS p SET
                   computed = (p.computed - $9::text[]) || jsonb_strip_nulls(jsonb_build_object(
                       $4::text, v.v1, $5::text, v.v2, $6::text, v.v3, $7::text, v.v4, $8::text, v.v5)),
                   version = p.version + 1, updated_at = now()
               FROM locked AS l
               JOIN predictions AS q ON q.workspace_id = $1 AND q.model_id = $2 AND q.person_id = l.person_id
               CROSS JOIN LATERAL (SELECT
                   round(q.announced_p_alive::numeric, 4)::float8, round(1 - q.announced_p_alive::numeric, 4)::float8,
                   round(q.announced_expected_purchases::numeric, 4)::float8, q.announced_order_value_minor,
                   q.announced_clv_minor) AS v(v1, v2, v3, v4, v5)
               WHERE p.workspace_id = $1 AND p.person_id = l.person_id
               RETURNING p.person_id, p.version, v.v1, v.v2, v.v3, v.v4, v.v5)
           SELECT n.claimed, c.person_id::text, c.version, c.v1, c.v2, c.v3, c.v4, c.v5
           FROM (SELECT count(*) AS claimed FROM claimed) AS n LEFT JOIN changed AS c ON true
           ORDER BY c.person_id""",
        workspace_id,
        model_id,
        limit,
        *names,
        list(removed),
        lane,
        bounds["after"],
        bounds["through"],
    )
    claimed = rows[0]["claimed"] if rows else 0
    if claimed < limit:  # the lane's last rows
        await conn.execute(
            "DELETE FROM prediction_announce_lanes WHERE workspace_id = $1 AND model_id = $2 AND lane = $3",
            workspace_id,
            model_id,
            lane,
        )
    return claimed, [(r[1], r[2], (r[3], r[4], r[5], r[6], r[7])) for r in rows if r[1] is not None]


async def set_computed(
    conn: asyncpg.Connection,
    workspace_id: str,
    names: Sequence[str],
    rows: dict[str, Sequence[float | int | None]],
) -> dict[str, int]:
    """Set computed traits ``names`` of these profiles to their rows of values (None removes the
    trait) and move their versions on; profiles locked in person order first. Returns person ->
    new version for the profiles that exist. At most 6 names."""
    locked = await conn.fetch(
        """SELECT person_id::text FROM profiles WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])
           ORDER BY person_id FOR UPDATE""",
        workspace_id,
        sorted(rows),
    )
    present = [r["person_id"] for r in locked]
    if not present:
        return {}
    width = 6
    assert len(names) <= width
    padded = [*names, *[""] * (width - len(names))]
    columns = [[rows[p][i] if i < len(names) else None for p in present] for i in range(width)]
    updated = await conn.fetch(
        """UPDATE profiles p SET
               computed = jsonb_strip_nulls(p.computed || jsonb_build_object(
                   $3::text, x.v1, $4::text, x.v2, $5::text, x.v3, $6::text, x.v4, $7::text, x.v5, $8::text, x.v6)),
               version = p.version + 1, updated_at = now()
           FROM unnest($2::uuid[], $9::float8[], $10::float8[], $11::float8[], $12::float8[], $13::float8[],
                       $14::float8[]) AS x(id, v1, v2, v3, v4, v5, v6)
           WHERE p.workspace_id = $1 AND p.person_id = x.id
           RETURNING p.person_id::text, p.version""",
        workspace_id,
        present,
        *padded,
        *columns,
    )
    return {r["person_id"]: r["version"] for r in updated}


async def make_due(conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str], now: datetime) -> None:
    """Profiles to re-evaluate by the timer worker (tag rules reading the predictions)."""
    await conn.execute(
        """INSERT INTO timers (workspace_id, person_id, due_at)
           SELECT $1, p, $3 FROM unnest($2::uuid[]) AS p
           ON CONFLICT (workspace_id, person_id) DO UPDATE SET due_at = least(timers.due_at, excluded.due_at)""",
        workspace_id,
        list(person_ids),
        now,
    )


# Jobs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    workspace_id: str
    job_id: str
    origin: str
    state: str
    calibration_end: date | None
    create_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    model_id: int | None
    customers: int
    announced: int
    timings: dict[str, float]
    error: str


_JOB_FIELDS = ", ".join(JobRow.__dataclass_fields__)


async def insert_job(
    conn: asyncpg.Connection, workspace_id: str, job_id: str, origin: str, calibration_end: date | None, now: datetime
) -> JobRow:
    """The job, created, or the existing one of that id (a retry)."""
    await conn.execute(
        """INSERT INTO prediction_jobs (workspace_id, job_id, origin, calibration_end, create_time)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT (workspace_id, job_id) DO NOTHING""",
        workspace_id,
        job_id,
        origin,
        calibration_end,
        now,
    )
    found = await get_job(conn, workspace_id, job_id)
    assert found is not None
    return found


async def get_job(conn: asyncpg.Connection, workspace_id: str, job_id: str) -> JobRow | None:
    row = await conn.fetchrow(
        f"SELECT {_JOB_FIELDS} FROM prediction_jobs WHERE workspace_id = $1 AND job_id = $2", workspace_id, job_id
    )
    return JobRow(**dict(row)) if row else None


async def list_jobs(
    conn: asyncpg.Connection, workspace_id: str, before: tuple[datetime, str] | None, limit: int
) -> list[JobRow]:
    rows = await conn.fetch(
        f"""SELECT {_JOB_FIELDS} FROM prediction_jobs
            WHERE workspace_id = $1 AND ($2::timestamptz IS NULL OR (create_time, job_id) < ($2, $3))
            ORDER BY create_time DESC, job_id DESC LIMIT $4""",
        workspace_id,
        before[0] if before else None,
        before[1] if before else "",
        limit,
    )
    return [JobRow(**dict(r)) for r in rows]


async def open_jobs(conn: asyncpg.Connection, limit: int) -> list[JobRow]:
    """Pending jobs, and running ones (perhaps of a process that died), oldest first."""
    rows = await conn.fetch(
        f"""SELECT {_JOB_FIELDS} FROM prediction_jobs WHERE state IN ('pending', 'running')
            ORDER BY create_time, job_id LIMIT $1""",
        limit,
    )
    return [JobRow(**dict(r)) for r in rows]


async def try_lock_workspace(conn: asyncpg.Connection, workspace_id: str) -> bool:
    return await conn.fetchval("SELECT pg_try_advisory_lock($1, hashtext($2))", RECOMPUTE_LOCK, workspace_id)


async def unlock_workspace(conn: asyncpg.Connection, workspace_id: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1, hashtext($2))", RECOMPUTE_LOCK, workspace_id)


async def update_job(conn: asyncpg.Connection, workspace_id: str, job_id: str, **changes: Any) -> None:
    names = list(changes)
    assignments = ", ".join(
        f"{name} = ${i + 3}" + ("::jsonb" if name == "timings" else "") for i, name in enumerate(names)
    )
    await conn.execute(
        f"UPDATE prediction_jobs SET {assignments} WHERE workspace_id = $1 AND job_id = $2",
        workspace_id,
        job_id,
        *changes.values(),
    )


async def workspaces_with_orders(conn: asyncpg.Connection) -> list[str]:
    """Distinct workspaces of the orders table (a loose index scan: one probe per workspace)."""
    rows = await conn.fetch(
        """WITH RECURSIVE w AS (
               SELECT min(workspace_id) AS id FROM orders
               UNION ALL
               SELECT (SELECT min(workspace_id) FROM orders WHERE workspace_id > w.id) FROM w WHERE w.id IS NOT NULL
           )
           SELECT id FROM w WHERE id IS NOT NULL"""
    )
    return [r["id"] for r in rows]


async def has_customers(conn: asyncpg.Connection, workspace_id: str, at_least: int) -> bool:
    found = await conn.fetchval(
        """SELECT count(*) FROM (SELECT DISTINCT person_id FROM orders
                                 WHERE workspace_id = $1 AND status IN ('completed', 'partially_refunded')
                                 LIMIT $2) AS s""",
        workspace_id,
        at_least,
    )
    return found >= at_least


async def latest_job_time(conn: asyncpg.Connection, workspace_id: str) -> tuple[datetime | None, bool]:
    """When the workspace's newest job was created, and whether one is still open."""
    row = await conn.fetchrow(
        """SELECT max(create_time) AS latest, bool_or(state IN ('pending', 'running')) AS open
           FROM prediction_jobs WHERE workspace_id = $1""",
        workspace_id,
    )
    return row["latest"], bool(row["open"])
