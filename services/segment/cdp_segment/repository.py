"""SQL for the segment schema (definitions, versions, memberships, history, timers, RFM).
Every query is scoped by workspace_id; the projection's own tables are in ``projection``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime

import asyncpg

from cdp_segment.domain import MembershipChange, Segment
from cdp_segment.rfm import GROUPS, RFM_TIMER, RfmSettings, RfmThresholds, recency_flip
from cdp_segment.rules.sql import END_OF_TIME

_COLUMNS = "workspace_id, segment_id, display_name, description, rule, etag, created_at, updated_at, version, builtin"

# Statements that scan or write a whole workspace (refreshes, RFM) get this long instead of the
# pool's 30 s command timeout.
WORKSPACE_SCAN_TIMEOUT = 600.0
# Persons regrouped per RFM transaction (a first computation moves every customer): each holds
# their advisory locks, and PostgreSQL's lock table is finite (max_locks_per_transaction).
RFM_SLICE = 1_000

# Advisory lock keys: 64-bit hashes of namespaced names (as the other services' locks), so that
# two workspaces or two persons practically never share a key; keys are taken in key order, so a
# collision could only make one wait for the other, never deadlock.
_WORKSPACE_KEY = "hashtextextended('segment-workspace:' || w, 0)"
_PERSON_KEY = "hashtextextended('segment-person:' || $1 || '/' || p, 0)"


def _segment(row: asyncpg.Record) -> Segment:
    return Segment(**dict(row))


# Locks ----------------------------------------------------------------------------------------
#
# The live path (consumer batches, timers, object tag refreshes, RFM slices) holds its workspaces'
# lock SHARED and the lock of every person it evaluates; a rule change (create, update, delete)
# holds the workspace lock EXCLUSIVE. Order: workspaces, then persons, each in key order.


async def lock_workspaces(conn: asyncpg.Connection, workspace_ids: Sequence[str], *, exclusive: bool = False) -> None:
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    await conn.execute(
        f"""SELECT {function}(k) FROM (
                SELECT DISTINCT {_WORKSPACE_KEY} AS k FROM unnest($1::text[]) AS u(w) ORDER BY k OFFSET 0) AS keys""",
        sorted(set(workspace_ids)),
    )


async def lock_persons(conn: asyncpg.Connection, workspace_id: str, person_ids: Iterable[str]) -> None:
    ids = sorted(set(person_ids))
    if ids:
        await conn.execute(
            f"""SELECT pg_advisory_xact_lock(k) FROM (
                    SELECT DISTINCT {_PERSON_KEY} AS k FROM unnest($2::text[]) AS u(p) ORDER BY k OFFSET 0) AS keys""",
            workspace_id,
            ids,
        )


async def lock_scope(
    conn: asyncpg.Connection,
    workspace_id: str,
    named: Iterable[str],
    *,
    split_off: Iterable[str] = (),
    message_ids: Iterable[str] = (),
    order_ids: Iterable[str] = (),
    locked: Iterable[str] = (),
    lock: bool = True,
) -> tuple[set[str], dict[str, str], set[str]]:
    """The persons a batch must hold, found and (with ``lock``) locked in one round trip: those
    ``named``, the survivors of those merged away (but ``split_off``), the owners of these facts
    and the persons splits claimed them for. Those ``locked`` already are not locked again (in
    key order otherwise). (every person wanted, merged-away named id -> survivor, the persons
    wanted that are merged away)."""
    rows = await conn.fetch(
        f"""WITH s AS (SELECT person_id::text AS p, survivor_id::text AS survivor FROM merged_persons
                       WHERE workspace_id = $1 AND person_id = ANY($2::uuid[]) AND NOT person_id = ANY($3::uuid[])),
                 w AS (SELECT unnest($2::uuid[])::text AS p
                       UNION SELECT survivor FROM s
                       UNION SELECT person_id::text FROM person_events
                             WHERE workspace_id = $1 AND message_id = ANY($4::text[])
                       UNION SELECT person_id::text FROM person_orders
                             WHERE workspace_id = $1 AND order_id = ANY($5::text[])
                       UNION SELECT to_person::text FROM pending_moves
                             WHERE workspace_id = $1 AND (kind = 'event' AND fact_id = ANY($4::text[])
                                                          OR kind = 'order' AND fact_id = ANY($5::text[]))),
                 l AS (SELECT pg_advisory_xact_lock(k) FROM (
                           SELECT DISTINCT {_PERSON_KEY} AS k FROM w WHERE $7 AND NOT p = ANY($6::text[])
                           ORDER BY k OFFSET 0) AS keys)
            SELECT w.p, s.survivor, m.person_id IS NOT NULL AS merged_away
            FROM w LEFT JOIN s ON s.p = w.p
                   LEFT JOIN merged_persons m ON m.workspace_id = $1 AND m.person_id = w.p::uuid
                   CROSS JOIN (SELECT count(*) FROM l) AS taken""",
        workspace_id,
        sorted(set(named)),
        sorted(set(split_off)),
        sorted(set(message_ids)),
        sorted(set(order_ids)),
        sorted(set(locked)),
        lock,
    )
    survivors = {r["p"]: r["survivor"] for r in rows if r["survivor"] is not None}
    return {r["p"] for r in rows}, survivors, {r["p"] for r in rows if r["merged_away"]}


async def try_lock_person(conn: asyncpg.Connection, workspace_id: str, person_id: str) -> bool:
    return await conn.fetchval(
        f"SELECT pg_try_advisory_xact_lock({_PERSON_KEY}) FROM (SELECT $2::text AS p) AS u", workspace_id, person_id
    )


# Definitions ------------------------------------------------------------------------------------


async def insert(conn: asyncpg.Connection, segment: Segment, now: datetime) -> Segment | None:
    """The stored segment, or None when the id is taken."""
    row = await conn.fetchrow(
        f"""INSERT INTO segments (workspace_id, segment_id, display_name, description, rule, etag, version, builtin,
                                  created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $8) ON CONFLICT DO NOTHING RETURNING {_COLUMNS}""",
        segment.workspace_id,
        segment.segment_id,
        segment.display_name,
        segment.description,
        segment.rule,
        segment.etag,
        segment.builtin,
        now,
    )
    return _segment(row) if row else None


async def get(
    conn: asyncpg.Connection, workspace_id: str, segment_id: str, *, for_update: bool = False
) -> Segment | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM segments WHERE workspace_id = $1 AND segment_id = $2{lock}", workspace_id, segment_id
    )
    return _segment(row) if row else None


async def all_segments(conn: asyncpg.Connection, workspace_id: str) -> list[Segment]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM segments WHERE workspace_id = $1", workspace_id)
    return [_segment(r) for r in rows]


async def update(conn: asyncpg.Connection, segment: Segment, now: datetime) -> Segment:
    row = await conn.fetchrow(
        f"""UPDATE segments SET display_name = $3, description = $4, rule = $5, etag = $6, version = $7,
                                updated_at = $8
            WHERE workspace_id = $1 AND segment_id = $2 RETURNING {_COLUMNS}""",
        segment.workspace_id,
        segment.segment_id,
        segment.display_name,
        segment.description,
        segment.rule,
        segment.etag,
        segment.version,
        now,
    )
    return _segment(row)


async def delete(conn: asyncpg.Connection, workspace_id: str, segment_id: str) -> None:
    for table in ("segments", "segment_versions", "timers"):
        await conn.execute(f"DELETE FROM {table} WHERE workspace_id = $1 AND segment_id = $2", workspace_id, segment_id)


async def list_page(conn: asyncpg.Connection, workspace_id: str, *, after: str, limit: int) -> list[Segment]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM segments WHERE workspace_id = $1 AND segment_id > $2
            ORDER BY segment_id LIMIT $3""",
        workspace_id,
        after,
        limit,
    )
    return [_segment(r) for r in rows]


async def add_version(conn: asyncpg.Connection, segment: Segment, now: datetime) -> None:
    await conn.execute(
        """INSERT INTO segment_versions (workspace_id, segment_id, version, rule, created_at)
           VALUES ($1, $2, $3, $4, $5)""",
        segment.workspace_id,
        segment.segment_id,
        segment.version,
        segment.rule,
        now,
    )


async def list_versions(
    conn: asyncpg.Connection, workspace_id: str, segment_id: str, *, before: int, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT version, rule, created_at FROM segment_versions
           WHERE workspace_id = $1 AND segment_id = $2 AND version < $3 ORDER BY version DESC LIMIT $4""",
        workspace_id,
        segment_id,
        before,
        limit,
    )


async def bump_generation(conn: asyncpg.Connection, workspace_id: str) -> None:
    await conn.execute(
        """INSERT INTO workspace_rules (workspace_id, generation) VALUES ($1, 1)
           ON CONFLICT (workspace_id) DO UPDATE SET generation = workspace_rules.generation + 1""",
        workspace_id,
    )


async def generations(conn: asyncpg.Connection, workspace_ids: Sequence[str]) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT workspace_id, generation FROM workspace_rules WHERE workspace_id = ANY($1::text[])",
        list(workspace_ids),
    )
    return {r["workspace_id"]: r["generation"] for r in rows}


async def rules_of(conn: asyncpg.Connection, workspace_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT segment_id, version, rule FROM segments WHERE workspace_id = $1 ORDER BY segment_id", workspace_id
    )


# Memberships and their history -------------------------------------------------------------------


async def record_changes(
    conn: asyncpg.Connection,
    workspace_id: str,
    changes: Sequence[MembershipChange],
    *,
    now: datetime,
    reason: str,
    triggers: Sequence[str],
    applied: bool,
    timers: Sequence[tuple[str, str, datetime | None]] = (),
    announce: Callable[[int], tuple[str, str, list]] | None = None,
) -> None:
    """Append changes to the history and, unless ``applied`` already, to ``memberships``; set
    ``timers`` (as :func:`set_timers`); and with ``announce(first parameter)`` (CTE, final
    SELECT, parameters: cdpkit.outbox.enqueue_many_sql), their announcements: one statement."""
    if not changes:
        await set_timers(conn, workspace_id, timers)  # nothing else to write
        return
    apply = (
        ""
        if applied
        else """,
        entered AS (
            INSERT INTO memberships (workspace_id, segment_id, person_id, since)
            SELECT $1, s, p, $7 FROM c WHERE e ON CONFLICT DO NOTHING),
        exited AS (
            DELETE FROM memberships m USING c
            WHERE NOT c.e AND m.workspace_id = $1 AND m.segment_id = c.s AND m.person_id = c.p)"""
    )
    params: list = [
        [c.segment_id for c in changes],
        [c.person_id for c in changes],
        [c.entered for c in changes],
        [c.segment_version for c in changes],
        reason,
        now,
        list(triggers),
    ]
    more, final = "", "SELECT count(*) FROM history"
    if timers:
        cte, timer_params = _timers_sql(timers, first=len(params) + 2)
        more += f", {cte}"
        params += timer_params
    if announce is not None:
        cte, final, outbox_params = announce(len(params) + 2)
        more += f", {cte}"
        params += outbox_params
    await conn.execute(
        f"""WITH c AS (
                SELECT * FROM unnest($2::text[], $3::uuid[], $4::boolean[], $5::integer[], $8::text[])
                AS u(s, p, e, v, t)){apply},
            history AS (
                INSERT INTO membership_history (workspace_id, segment_id, person_id, entered, reason,
                                                segment_version, change_time, trigger_message_id)
                SELECT $1, s, p, e, $6, v, $7, t FROM c RETURNING 1){more}
            {final}""",
        workspace_id,
        *params,
    )


async def membership(
    conn: asyncpg.Connection, workspace_id: str, segment_id: str, person_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT since FROM memberships WHERE workspace_id = $1 AND segment_id = $2 AND person_id = $3",
        workspace_id,
        segment_id,
        person_id,
    )


async def members_page(
    conn: asyncpg.Connection, workspace_id: str, segment_id: str, *, after: str | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT person_id, since FROM memberships
           WHERE workspace_id = $1 AND segment_id = $2 AND ($3::uuid IS NULL OR person_id > $3::uuid)
           ORDER BY person_id LIMIT $4""",
        workspace_id,
        segment_id,
        after,
        limit,
    )


async def count_members(conn: asyncpg.Connection, workspace_id: str, segment_id: str) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM memberships WHERE workspace_id = $1 AND segment_id = $2", workspace_id, segment_id
    )


async def memberships_page(
    conn: asyncpg.Connection, workspace_id: str, person_id: str, *, after: str, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT m.segment_id, s.display_name, m.since FROM memberships m
           JOIN segments s ON s.workspace_id = m.workspace_id AND s.segment_id = m.segment_id
           WHERE m.workspace_id = $1 AND m.person_id = $2 AND m.segment_id > $3
           ORDER BY m.segment_id LIMIT $4""",
        workspace_id,
        person_id,
        after,
        limit,
    )


async def history_page(
    conn: asyncpg.Connection,
    workspace_id: str,
    segment_id: str,
    *,
    person_ids: Sequence[str] | None,
    before: int | None,
    limit: int,
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT id, person_id, entered, reason, segment_version, change_time, trigger_message_id
           FROM membership_history
           WHERE workspace_id = $1 AND segment_id = $2 AND ($3::uuid[] IS NULL OR person_id = ANY($3::uuid[]))
             AND ($4::bigint IS NULL OR id < $4) ORDER BY id DESC LIMIT $5""",
        workspace_id,
        segment_id,
        person_ids,
        before,
        limit,
    )


# Timers -------------------------------------------------------------------------------------------


def _timers_sql(timers: Sequence[tuple[str, str, datetime | None]], *, first: int) -> tuple[str, list]:
    """CTEs that set (segment id, person id, due) timers in workspace $1, the last given for a
    pair winning; a None due drops the timer. (CTEs, parameters numbered from ``$first``)."""
    last = {(s, p): d for s, p, d in timers}
    n = [f"${first + i}" for i in range(3)]
    cte = f"""timer_rows AS (SELECT * FROM unnest({n[0]}::text[], {n[1]}::uuid[], {n[2]}::timestamptz[]) AS u(s, p, d)),
        timers_gone AS (DELETE FROM timers t USING timer_rows u
                        WHERE u.d IS NULL AND t.workspace_id = $1 AND t.segment_id = u.s AND t.person_id = u.p),
        timers_due AS (INSERT INTO timers (workspace_id, segment_id, person_id, due_at)
                       SELECT $1, s, p, d FROM timer_rows WHERE d IS NOT NULL
                       ON CONFLICT (workspace_id, segment_id, person_id) DO UPDATE SET due_at = excluded.due_at)"""
    return cte, [[s for s, _ in last], [p for _, p in last], list(last.values())]


async def set_timers(
    conn: asyncpg.Connection, workspace_id: str, timers: Sequence[tuple[str, str, datetime | None]]
) -> None:
    """Set (segment id, person id, due) timers, the last given for a pair winning; a None due
    drops the timer. One statement."""
    if timers:
        cte, params = _timers_sql(timers, first=2)
        await conn.execute(f"WITH {cte} SELECT 1", workspace_id, *params)


async def clear_timers(
    conn: asyncpg.Connection, workspace_id: str, segment_id: str, persons: Sequence[str] | None
) -> None:
    await conn.execute(
        """DELETE FROM timers WHERE workspace_id = $1 AND segment_id = $2
           AND ($3::uuid[] IS NULL OR person_id = ANY($3::uuid[]))""",
        workspace_id,
        segment_id,
        None if persons is None else list(persons),
        timeout=WORKSPACE_SCAN_TIMEOUT,
    )


async def insert_timers(conn: asyncpg.Connection, workspace_id: str, segment_id: str, edges: tuple[str, list]) -> None:
    """Timers from an edges query (rules.sql.edges_query: person_id, due_at)."""
    query, params = edges
    n = len(params)
    await conn.execute(
        f"""INSERT INTO timers (workspace_id, segment_id, person_id, due_at)
            SELECT $1, ${n + 1}::text, person_id, due_at FROM ({query}) AS e
            ON CONFLICT (workspace_id, segment_id, person_id) DO UPDATE SET due_at = excluded.due_at""",
        *params,
        segment_id,
        timeout=WORKSPACE_SCAN_TIMEOUT,
    )


async def due_workspaces(conn: asyncpg.Connection, now: datetime, limit: int = 100) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT workspace_id FROM (SELECT workspace_id FROM timers WHERE due_at <= $1 LIMIT 10000) t LIMIT $2",
        now,
        limit,
    )
    return [r["workspace_id"] for r in rows]


async def due_timers(conn: asyncpg.Connection, workspace_id: str, now: datetime, limit: int) -> list[asyncpg.Record]:
    """Due timers of one workspace (read, not locked: a worker takes a person's timers only once
    it holds the person's lock, take_due_timers)."""
    return await conn.fetch(
        """SELECT segment_id, person_id::text AS person_id FROM timers
           WHERE workspace_id = $1 AND due_at <= $2 ORDER BY due_at LIMIT $3""",
        workspace_id,
        now,
        limit,
    )


async def take_due_timers(
    conn: asyncpg.Connection, workspace_id: str, now: datetime, persons: Sequence[str]
) -> list[tuple[str, str]]:
    """Delete and return the (segment, person) timers of these persons (whose locks the caller
    holds) that are due: what another worker left of them."""
    rows = await conn.fetch(
        """DELETE FROM timers WHERE workspace_id = $1 AND person_id = ANY($2::uuid[]) AND due_at <= $3
           RETURNING segment_id, person_id::text AS person_id""",
        workspace_id,
        list(persons),
        now,
    )
    return [(r["segment_id"], r["person_id"]) for r in rows]


async def delete_person_timers(conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]) -> None:
    await conn.execute(
        "DELETE FROM timers WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])", workspace_id, list(person_ids)
    )


# Merges ---------------------------------------------------------------------------------------------


async def record_merge(
    conn: asyncpg.Connection, workspace_id: str, survivor: str, merged: Sequence[str], now: datetime
) -> None:
    """merged -> survivor, and every earlier merge into a merged person now points at the survivor."""
    await conn.execute(
        """UPDATE merged_persons SET survivor_id = $2 WHERE workspace_id = $1 AND survivor_id = ANY($3::uuid[])""",
        workspace_id,
        survivor,
        list(merged),
    )
    await conn.execute(
        """INSERT INTO merged_persons (workspace_id, person_id, survivor_id, merged_at)
           SELECT $1, m, $2, $4 FROM unnest($3::uuid[]) AS m
           ON CONFLICT (workspace_id, person_id) DO UPDATE SET survivor_id = excluded.survivor_id""",
        workspace_id,
        survivor,
        list(merged),
        now,
    )


async def record_split(
    conn: asyncpg.Connection, workspace_id: str, new_person: str, moved_person_ids: Sequence[str], now: datetime
) -> None:
    """An unmerge: ``new_person`` is a person of its own again, and the ids that had been merged
    into the original and now resolve to ``new_person`` point at it."""
    await conn.execute(
        "DELETE FROM merged_persons WHERE workspace_id = $1 AND person_id = $2", workspace_id, new_person
    )
    moved = sorted(set(moved_person_ids) - {new_person})
    if moved:
        await record_merge(conn, workspace_id, new_person, moved, now)


async def survivors(conn: asyncpg.Connection, workspace_id: str, person_ids: Iterable[str]) -> dict[str, str]:
    """merged-away person -> survivor, for those of ``person_ids`` that were merged away."""
    rows = await conn.fetch(
        """SELECT person_id::text AS person_id, survivor_id::text AS survivor_id FROM merged_persons
           WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])""",
        workspace_id,
        sorted(set(person_ids)),
    )
    return {r["person_id"]: r["survivor_id"] for r in rows}


async def drop_memberships(
    conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]
) -> list[asyncpg.Record]:
    """Delete the memberships of persons; the (segment_id, person_id) rows deleted."""
    return await conn.fetch(
        """DELETE FROM memberships WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])
           RETURNING segment_id, person_id::text AS person_id""",
        workspace_id,
        list(person_ids),
    )


async def drop_segment_memberships(
    conn: asyncpg.Connection, workspace_id: str, segment_id: str
) -> list[asyncpg.Record]:
    return await conn.fetch(
        """DELETE FROM memberships WHERE workspace_id = $1 AND segment_id = $2
           RETURNING person_id::text AS person_id""",
        workspace_id,
        segment_id,
        timeout=WORKSPACE_SCAN_TIMEOUT,
    )


async def segment_versions(conn: asyncpg.Connection, workspace_id: str) -> dict[str, int]:
    rows = await conn.fetch("SELECT segment_id, version FROM segments WHERE workspace_id = $1", workspace_id)
    return {r["segment_id"]: r["version"] for r in rows}


# RFM ------------------------------------------------------------------------------------------------


async def rfm_settings(conn: asyncpg.Connection, workspace_id: str) -> RfmSettings:
    row = await conn.fetchrow("SELECT method, high_score FROM rfm_settings WHERE workspace_id = $1", workspace_id)
    return RfmSettings(row["method"], row["high_score"]) if row else RfmSettings()


async def save_rfm_settings(conn: asyncpg.Connection, workspace_id: str, settings: RfmSettings, now: datetime) -> None:
    await conn.execute(
        """INSERT INTO rfm_settings (workspace_id, method, high_score, updated_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (workspace_id) DO UPDATE SET method = excluded.method, high_score = excluded.high_score,
             updated_at = excluded.updated_at""",
        workspace_id,
        settings.method,
        settings.high_score,
        now,
    )


def _thresholds(row: asyncpg.Record) -> RfmThresholds:
    return RfmThresholds(
        row["method"],
        row["high_score"],
        tuple(row["recency_seconds"]),
        tuple(row["frequency"]),
        tuple(row["monetary"]),
        row["customers"],
        row["computed_at"],
    )


async def rfm_thresholds(conn: asyncpg.Connection, workspace_id: str) -> RfmThresholds | None:
    row = await conn.fetchrow("SELECT * FROM rfm_thresholds WHERE workspace_id = $1", workspace_id)
    return _thresholds(row) if row else None


def _only(persons: str) -> str:
    """A condition restricting ``person_id`` to the uuid[] placeholder ``persons`` (none when
    empty). A join with the unnested array, not ``= ANY``: a generic plan of a prepared statement
    then still expects a few persons (index probes), where ``= ANY($n)`` of an unknown array made
    it scan the whole workspace (3 s a slice at 1M persons)."""
    return f" AND person_id IN (SELECT unnest({persons}))" if persons else ""


def _raw(persons: str = "") -> str:
    """Every person of the workspace ($1) with their raw RFM values (last order time, order count,
    total spent) as rfm.raw_values reads them, the recency at $2 and whether they are a customer
    (only those in the uuid[] placeholder ``persons`` when given)."""
    # try_timestamptz in FROM (LATERAL): once a person. In the select list, the planner pulls the
    # subquery up and evaluates it again wherever the time is used (six times a person here).
    return f"""
    SELECT person_id, rfm_group, extract(epoch FROM $2::timestamptz - last) AS r, f, m,
           last IS NOT NULL AND f > 0 AND m IS NOT NULL AS customer FROM (
        SELECT person_id, rfm_group, l.last,
               CASE WHEN jsonb_typeof(computed -> 'order_count') = 'number'
                    THEN (computed ->> 'order_count')::numeric END AS f,
               CASE WHEN jsonb_typeof(computed -> 'total_spent_minor') = 'number'
                    THEN (computed ->> 'total_spent_minor')::numeric END AS m
        FROM persons CROSS JOIN LATERAL try_timestamptz(
            CASE WHEN jsonb_typeof(computed -> 'last_order_time') = 'string' THEN computed ->> 'last_order_time' END
        ) AS l(last)
        WHERE workspace_id = $1{_only(persons)}
    ) AS raw"""


def _customers() -> str:
    """The customers of the workspace ($1) and their raw RFM values at $2."""
    return f"SELECT person_id, r, f, m FROM ({_raw()}) AS v WHERE customer"


async def compute_rfm_thresholds(
    conn: asyncpg.Connection, workspace_id: str, settings: RfmSettings, now: datetime
) -> RfmThresholds:
    """The thresholds of the workspace's customers now (not stored: save_rfm_thresholds)."""
    if settings.method == "mean":
        aggregates = ", ".join(
            f"CASE WHEN count(*) > 0 THEN ARRAY[{value}] END"
            for value in ("round(avg(r))", "round(avg(f), 6)", "round(avg(m), 6)")
        )
    else:
        cuts = "ARRAY[0.2, 0.4, 0.6, 0.8]"
        aggregates = ", ".join(
            f"percentile_disc({cuts}) WITHIN GROUP (ORDER BY {column})::numeric[]" for column in ("r", "f", "m")
        )
    row = await conn.fetchrow(
        f"""SELECT coalesce(a.r, '{{}}') AS recency_seconds, coalesce(a.f, '{{}}') AS frequency,
                   coalesce(a.m, '{{}}') AS monetary, a.n AS customers
            FROM (SELECT {aggregates}, count(*) FROM ({_customers()}) AS c) AS a(r, f, m, n)""",
        workspace_id,
        now,
        timeout=WORKSPACE_SCAN_TIMEOUT,
    )
    return RfmThresholds(
        settings.method,
        settings.high_score,
        tuple(row["recency_seconds"]),
        tuple(row["frequency"]),
        tuple(row["monetary"]),
        row["customers"],
        now,
    )


async def claim_rfm_lease(
    conn: asyncpg.Connection, workspace_id: str, holder: str, now: datetime, until: datetime
) -> bool:
    """Whether ``holder`` holds the workspace's RFM lease (free, lapsed or its own) until ``until``."""
    return bool(
        await conn.fetchval(
            """INSERT INTO rfm_leases (workspace_id, holder, until) VALUES ($1, $2, $4)
               ON CONFLICT (workspace_id) DO UPDATE SET holder = excluded.holder, until = excluded.until
               WHERE rfm_leases.until <= $3 OR rfm_leases.holder = excluded.holder
               RETURNING true""",
            workspace_id,
            holder,
            now,
            until,
        )
    )


async def release_rfm_lease(conn: asyncpg.Connection, workspace_id: str, holder: str) -> None:
    await conn.execute("DELETE FROM rfm_leases WHERE workspace_id = $1 AND holder = $2", workspace_id, holder)


async def save_rfm_thresholds(conn: asyncpg.Connection, workspace_id: str, t: RfmThresholds) -> None:
    await conn.execute(
        """INSERT INTO rfm_thresholds (workspace_id, method, high_score, recency_seconds, frequency, monetary,
                                       customers, computed_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (workspace_id) DO UPDATE SET method = excluded.method, high_score = excluded.high_score,
             recency_seconds = excluded.recency_seconds, frequency = excluded.frequency,
             monetary = excluded.monetary, customers = excluded.customers, computed_at = excluded.computed_at""",
        workspace_id,
        t.method,
        t.high_score,
        list(t.recency_seconds),
        list(t.frequency),
        list(t.monetary),
        t.customers,
        t.computed_at,
    )


def _high_sql(value: str, cuts: str, thresholds: RfmThresholds, *, lower_is_better: bool) -> str:
    """The SQL twin of rfm._high (quintile: four cut points)."""
    better = "<" if lower_is_better else ">"
    if thresholds.method == "mean":
        return f"({value} {better} ({cuts})[1])"
    score = " + ".join(f"({value} {better} ({cuts})[{k}])::int" for k in range(1, 5))
    return f"((1 + {score}) >= {thresholds.high_score})"


def _rfm_wanted(thresholds: RfmThresholds, persons: str = "") -> str:
    """A query of (person_id, stored, grp, due) for the persons of the workspace ($1) at $2 (only
    those in the uuid[] placeholder ``persons`` when given): the group stored, the group under the
    thresholds in $3-$5 (the SQL twin of rfm.rfm_group) and the next recency regroup at the flip
    point $6 (rfm.next_regroup), or NULL. One pass over the persons, no join."""
    if thresholds.customers == 0:
        return (
            "SELECT person_id, rfm_group AS stored, NULL::text AS grp, NULL::timestamptz AS due FROM persons"
            f" WHERE workspace_id = $1 AND $2::timestamptz < 'infinity' AND $3::numeric IS NULL{_only(persons)}"
        )
    # the group by its position (R high 4, F high 2, M high 1): each test evaluated once
    groups = ", ".join(f"'{GROUPS[(bool(i & 4), bool(i & 2), bool(i & 1))]}'" for i in range(8))
    flip = "$6::numeric"
    return f"""
        SELECT person_id, rfm_group AS stored,
               CASE WHEN customer THEN (ARRAY[{groups}])[1 + 4 * rh::int + 2 * fh::int + mh::int] END AS grp,
               CASE WHEN customer AND r < {flip}
                         AND {flip} - r < extract(epoch FROM '{END_OF_TIME}'::timestamptz - $2::timestamptz)
                    THEN $2::timestamptz + (({flip} - r) * 1000000)::bigint * interval '1 microsecond' END AS due
        FROM (SELECT person_id, rfm_group, customer, r,
                     {_high_sql("r", "$3::numeric[]", thresholds, lower_is_better=True)} AS rh,
                     {_high_sql("f", "$4::numeric[]", thresholds, lower_is_better=False)} AS fh,
                     {_high_sql("m", "$5::numeric[]", thresholds, lower_is_better=False)} AS mh
              FROM ({_raw(persons)}) AS v) AS x"""


def _rfm_params(workspace_id: str, thresholds: RfmThresholds, now: datetime) -> list:
    if thresholds.customers == 0:
        return [workspace_id, now, None]
    return [
        workspace_id,
        now,
        list(thresholds.recency_seconds),
        list(thresholds.frequency),
        list(thresholds.monetary),
        recency_flip(thresholds),
    ]


async def rfm_moves(conn: asyncpg.Connection, workspace_id: str, thresholds: RfmThresholds, now: datetime):
    """Persons whose stored group or recency timer differs from theirs under ``thresholds`` (a
    read): those a recompute must regroup or re-time; the others are right already."""
    rows = await conn.fetch(
        f"""SELECT w.person_id::text AS person_id FROM ({_rfm_wanted(thresholds)}) AS w
            LEFT JOIN timers t ON t.workspace_id = $1 AND t.segment_id = '{RFM_TIMER}' AND t.person_id = w.person_id
            WHERE w.stored IS DISTINCT FROM w.grp OR t.due_at IS DISTINCT FROM w.due""",
        *_rfm_params(workspace_id, thresholds, now),
        timeout=WORKSPACE_SCAN_TIMEOUT,
    )
    return [r["person_id"] for r in rows]


async def regroup_rfm(
    conn: asyncpg.Connection, workspace_id: str, thresholds: RfmThresholds, now: datetime, persons: Sequence[str]
) -> list[str]:
    """Set these persons' RFM group under ``thresholds``; the ids of those whose group changed."""
    params = _rfm_params(workspace_id, thresholds, now)
    wanted = _rfm_wanted(thresholds, f"${len(params) + 1}::uuid[]")
    rows = await conn.fetch(
        f"""UPDATE persons p SET rfm_group = w.grp FROM ({wanted}) AS w
            WHERE p.workspace_id = $1 AND p.person_id = w.person_id AND w.stored IS DISTINCT FROM w.grp
            RETURNING p.person_id::text AS person_id""",
        *params,
        list(persons),
        timeout=WORKSPACE_SCAN_TIMEOUT,
    )
    return [r["person_id"] for r in rows]


async def regroup_and_time_rfm(
    conn: asyncpg.Connection, workspace_id: str, thresholds: RfmThresholds, now: datetime, persons: Sequence[str]
) -> list[str]:
    """Set these persons' RFM group and replace their recency timer (rfm.next_regroup) under
    ``thresholds``, in one statement; the ids of those whose group changed. The caller holds
    their locks."""
    params = _rfm_params(workspace_id, thresholds, now)
    wanted = _rfm_wanted(thresholds, f"${len(params) + 1}::uuid[]")
    rows = await conn.fetch(
        f"""WITH w AS MATERIALIZED ({wanted}),
                 gone AS (DELETE FROM timers t USING w
                          WHERE t.workspace_id = $1 AND t.segment_id = '{RFM_TIMER}' AND t.person_id = w.person_id
                            AND w.due IS NULL),
                 due AS (INSERT INTO timers (workspace_id, segment_id, person_id, due_at)
                         SELECT $1, '{RFM_TIMER}', person_id, due FROM w WHERE due IS NOT NULL
                         ON CONFLICT (workspace_id, segment_id, person_id) DO UPDATE SET due_at = excluded.due_at
                         WHERE timers.due_at IS DISTINCT FROM excluded.due_at)
            UPDATE persons p SET rfm_group = w.grp FROM w
            WHERE p.workspace_id = $1 AND p.person_id = w.person_id AND w.stored IS DISTINCT FROM w.grp
            RETURNING p.person_id::text AS person_id""",
        *params,
        list(persons),
        timeout=WORKSPACE_SCAN_TIMEOUT,
    )
    return [r["person_id"] for r in rows]


async def rfm_counts(conn: asyncpg.Connection, workspace_id: str) -> dict[str | None, int]:
    rows = await conn.fetch(
        "SELECT rfm_group, count(*) AS n FROM persons WHERE workspace_id = $1 GROUP BY rfm_group", workspace_id
    )
    return {r["rfm_group"]: r["n"] for r in rows}


async def workspaces_with_persons(conn: asyncpg.Connection) -> list[str]:
    # A loose index scan: one probe per workspace instead of reading every person.
    rows = await conn.fetch(
        """WITH RECURSIVE w(id) AS (
               SELECT min(workspace_id) FROM persons
               UNION ALL SELECT (SELECT min(workspace_id) FROM persons WHERE workspace_id > w.id) FROM w
               WHERE w.id IS NOT NULL)
           SELECT id FROM w WHERE id IS NOT NULL"""
    )
    return [r["id"] for r in rows]


# Co-purchases ---------------------------------------------------------------------------------------


async def baskets(conn: asyncpg.Connection, workspace_id: str, since: datetime | None) -> AsyncIterator[list[str]]:
    """The distinct skus of every completed order (since ``since``); inside a transaction."""
    async for row in conn.cursor(
        """SELECT array_agg(DISTINCT i.sku) AS skus FROM person_orders o
           JOIN order_items i ON i.workspace_id = o.workspace_id AND i.order_id = o.order_id
           WHERE o.workspace_id = $1 AND o.status = 'completed' AND i.sku <> ''
             AND ($2::timestamptz IS NULL OR o.order_time > $2)
           GROUP BY o.order_id""",
        workspace_id,
        since,
        prefetch=5000,
    ):
        yield row["skus"]


async def refresh_co_purchases(conn: asyncpg.Connection, workspace_id: str, now: datetime, max_products: int) -> int:
    """Recount the workspace's co-purchases from its completed orders (a basket: an order's
    distinct skus, the first ``max_products`` in code-point order, as cdp_analytics.crosssell
    counts them); returns the baskets. In the caller's transaction (readers see the old counts
    until it commits)."""
    await conn.execute(
        "DELETE FROM co_purchase_counts WHERE workspace_id = $1", workspace_id, timeout=WORKSPACE_SCAN_TIMEOUT
    )
    await conn.execute("SET LOCAL work_mem = '256MB'")
    baskets = await conn.fetchval(
        """WITH items AS (
               SELECT DISTINCT i.order_id, i.sku FROM person_orders o
               JOIN order_items i ON i.workspace_id = o.workspace_id AND i.order_id = o.order_id
               WHERE o.workspace_id = $1 AND o.status = 'completed' AND i.sku <> ''
           ), basket AS (
               SELECT order_id, sku FROM (
                   SELECT order_id, sku, row_number() OVER (PARTITION BY order_id ORDER BY sku COLLATE "C") AS n
                   FROM items) AS ranked
               WHERE n <= $2
           ), products AS (
               INSERT INTO co_purchase_counts (workspace_id, sku, companion, baskets)
               SELECT $1, sku, '', count(*) FROM basket GROUP BY sku
           ), pairs AS (
               INSERT INTO co_purchase_counts (workspace_id, sku, companion, baskets)
               SELECT $1, a.sku, b.sku, count(*)
               FROM basket a JOIN basket b ON a.order_id = b.order_id AND a.sku <> b.sku
               GROUP BY a.sku, b.sku
           )
           -- (data-modifying WITH parts run to completion whether or not they are read)
           SELECT count(DISTINCT order_id) FROM basket""",
        workspace_id,
        max_products,
        timeout=WORKSPACE_SCAN_TIMEOUT,
    )
    await conn.execute(
        """INSERT INTO co_purchase_runs (workspace_id, baskets, compute_time) VALUES ($1, $2, $3)
           ON CONFLICT (workspace_id) DO UPDATE SET baskets = excluded.baskets, compute_time = excluded.compute_time""",
        workspace_id,
        baskets,
        now,
    )
    return baskets


async def co_purchase_run(conn: asyncpg.Connection, workspace_id: str) -> tuple[int, datetime] | None:
    """(baskets, when) of the workspace's stored counts, if any."""
    row = await conn.fetchrow(
        "SELECT baskets, compute_time FROM co_purchase_runs WHERE workspace_id = $1", workspace_id
    )
    return (row["baskets"], row["compute_time"]) if row else None


async def co_purchases_of(conn: asyncpg.Connection, workspace_id: str, sku: str) -> list[tuple[str, int, int]]:
    """The stored counts around ``sku``: (companion, baskets with both, baskets with the
    companion), and ('', baskets with sku, same) for the product itself."""
    rows = await conn.fetch(
        """SELECT c.companion, c.baskets AS together, coalesce(p.baskets, c.baskets) AS alone
           FROM co_purchase_counts c
           LEFT JOIN co_purchase_counts p ON c.companion <> '' AND p.workspace_id = c.workspace_id
                AND p.sku = c.companion AND p.companion = ''
           WHERE c.workspace_id = $1 AND c.sku = $2""",
        workspace_id,
        sku,
    )
    return [(r["companion"], r["together"], r["alone"]) for r in rows]


async def stale_co_purchases(conn: asyncpg.Connection, before: datetime) -> list[str]:
    """Workspaces with persons whose counts were computed before ``before`` (or never)."""
    workspaces = await workspaces_with_persons(conn)
    fresh = await conn.fetch(
        "SELECT workspace_id FROM co_purchase_runs WHERE compute_time >= $1 AND workspace_id = ANY($2::text[])",
        before,
        workspaces,
    )
    return sorted(set(workspaces) - {r["workspace_id"] for r in fresh})


# Workspace time zones (profile's settings, announced) ---------------------------------------------


async def time_zone(conn: asyncpg.Connection, workspace_id: str) -> str | None:
    return await conn.fetchval("SELECT time_zone FROM workspace_settings WHERE workspace_id = $1", workspace_id)


async def store_time_zone(conn: asyncpg.Connection, workspace_id: str, time_zone: str, version: int) -> bool:
    """Keep the announced zone unless a newer settings version is stored; whether it was kept."""
    return (
        await conn.fetchval(
            """INSERT INTO workspace_settings (workspace_id, time_zone, version) VALUES ($1, $2, $3)
               ON CONFLICT (workspace_id) DO UPDATE SET time_zone = $2, version = $3, update_time = now()
               WHERE workspace_settings.version < $3
               RETURNING true""",
            workspace_id,
            time_zone,
            version,
        )
        is not None
    )
