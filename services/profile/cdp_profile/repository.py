"""SQL for the profile schema. Every query is scoped by workspace_id."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from cdp_profile.domain import OBJECT_KINDS, LedgerEntry, Order, OrderLine, ProfileState
from cdpkit.ids import new_id


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass(frozen=True)
class EventRow:
    workspace_id: str
    message_id: str
    person_id: str
    type: str
    event: str
    # Serialized google.protobuf.Struct (PII-named properties are in pii).
    properties: bytes
    context: bytes
    event_time: datetime
    received_at: datetime
    # {"set": ..., "set_once": ..., "unset": [...]} without PII; None for other calls.
    traits: dict[str, Any] | None = None
    pii: bytes | None = None
    identifiers: tuple[str, ...] = ()
    channel: str = ""
    store_id: str = ""
    staff_id: str = ""
    source: str = ""
    # Events stored before migration 0002: {"properties": {...}, "context": {...}}.
    legacy: dict[str, Any] | None = None


@dataclass(frozen=True)
class StoredProfile:
    """A profile row: the state without its PII traits, and those sealed."""

    state: ProfileState
    pii: bytes | None
    merged_person_ids: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


_EVENT_NAMES = (
    "workspace_id", "message_id", "person_id", "type", "event", "properties", "context", "event_time", "received_at",
    "traits", "pii", "identifiers", "channel", "store_id", "staff_id", "source", "legacy",
)  # fmt: skip
_EVENT_COLUMNS = ", ".join("person_id::text AS person_id" if n == "person_id" else n for n in _EVENT_NAMES)
# jsonb inside an anonymous record arrives in binary, which the pool's text codec cannot read: as text.
_EVENT_FIELDS_IN_RECORD = ", ".join(f"{n}::text" if n in ("person_id", "traits", "legacy") else n for n in _EVENT_NAMES)


def _event_row(record: asyncpg.Record | tuple) -> EventRow:
    values = list(record)
    values[11] = tuple(values[11] or ())
    for index in (9, 16):  # traits, legacy
        if isinstance(values[index], str):
            values[index] = orjson.loads(values[index])
    return EventRow(*values)


# Partitions -----------------------------------------------------------------------------------


def month_of(moment: datetime) -> tuple[int, int]:
    moment = moment.astimezone(UTC)
    return moment.year, moment.month


async def create_partitions(conn: asyncpg.Connection, months: Iterable[tuple[int, int]]) -> None:
    """Create the monthly partitions of ``events`` that do not exist yet (outside any transaction).

    Created apart and then attached: ``ATTACH PARTITION`` takes a SHARE UPDATE EXCLUSIVE lock on
    ``events``, which readers and writers do not conflict with (``CREATE TABLE ... PARTITION OF``
    would wait for an exclusive lock behind every open reader, and everything behind it).
    """
    for year, month in sorted(set(months)):
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
        name = f"events_p{year:04d}{month:02d}"
        try:
            await conn.execute(f"CREATE TABLE IF NOT EXISTS {name} (LIKE events INCLUDING DEFAULTS)")
            await conn.execute(
                f"ALTER TABLE events ATTACH PARTITION {name} "
                f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
            )
        except (asyncpg.DuplicateTableError, asyncpg.UniqueViolationError, asyncpg.ObjectInUseError):
            pass  # another replica created it at the same moment
        except asyncpg.PostgresError as exc:
            if "is already a partition" not in str(exc):
                raise


async def existing_partitions(conn: asyncpg.Connection) -> tuple[datetime | None, set[tuple[int, int]]]:
    """(upper bound of ``events_history``, the monthly partitions)."""
    rows = await conn.fetch(
        """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'events'::regclass"""
    )
    months = {(int(r["relname"][8:12]), int(r["relname"][12:14])) for r in rows if r["relname"].startswith("events_p")}
    history = next((r["bound"] for r in rows if r["relname"] == "events_history"), None)
    bound = None
    if history:
        bound = datetime.fromisoformat(history.rsplit("TO ('", 1)[1].split("'")[0]).astimezone(UTC)
    return bound, months


# Events ---------------------------------------------------------------------------------------


async def insert_new_events(conn: asyncpg.Connection, workspace_id: str, rows: Sequence[EventRow]) -> list[EventRow]:
    """Insert the events of ``workspace_id`` not stored yet (``rows`` hold each message id once);
    returns those. The workspace goes once and the new message ids come back as one array (a
    batch is thousands of events: every array element costs asyncpg's encoder and decoder)."""
    if not rows:
        return []
    inserted = await conn.fetchval(
        """WITH input AS (
               SELECT * FROM unnest($2::text[], $3::uuid[], $4::text[], $5::text[], $6::bytea[], $7::bytea[],
                                    $8::timestamptz[], $9::timestamptz[], $10::text[], $11::bytea[], $12::text[],
                                    $13::text[], $14::text[], $15::text[], $16::text[])
                   AS x(m, p, t, e, pr, c, et, rt, tr, pii, ids, ch, st, sf, so)
           ), fresh AS (
               INSERT INTO event_keys (workspace_id, message_id, person_id, event_time)
               SELECT $1, m, p, et FROM input
               ON CONFLICT (workspace_id, message_id) DO NOTHING
               RETURNING message_id
           ), stored AS (
               INSERT INTO events (workspace_id, message_id, person_id, type, event, properties, context,
                                   event_time, received_at, traits, pii, identifiers, channel, store_id, staff_id,
                                   source)
               SELECT $1, m, p, t, e, pr, c, et, rt, tr::jsonb, pii, ids::text[], ch, st, sf, so
               FROM input JOIN fresh ON fresh.message_id = input.m
               RETURNING message_id
           )
           SELECT coalesce(array_agg(message_id), '{}') FROM stored""",
        workspace_id,
        [r.message_id for r in rows],
        [r.person_id for r in rows],
        [r.type for r in rows],
        [r.event for r in rows],
        [r.properties for r in rows],
        [r.context for r in rows],
        [r.event_time for r in rows],
        [r.received_at for r in rows],
        [_json(r.traits) if r.traits is not None else None for r in rows],
        [r.pii for r in rows],
        ["{" + ",".join(r.identifiers) + "}" for r in rows],
        [r.channel for r in rows],
        [r.store_id for r in rows],
        [r.staff_id for r in rows],
        [r.source for r in rows],
    )
    new = set(inserted)
    return [r for r in rows if r.message_id in new]


async def list_events(
    conn: asyncpg.Connection,
    workspace_id: str,
    person_id: str,
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
    event: str = "",
) -> list[EventRow]:
    """Events of a person, newest first, strictly after the keyset position ``before``."""
    rows = await conn.fetch(
        f"""SELECT {_EVENT_COLUMNS}
           FROM events
           WHERE workspace_id = $1 AND person_id = $2::uuid
             AND ($3::timestamptz IS NULL OR (event_time, message_id) < ($3, $4))
             AND ($6 = '' OR event = $6)
           ORDER BY event_time DESC, message_id DESC
           LIMIT $5""",
        workspace_id,
        person_id,
        before[0] if before else None,
        before[1] if before else "",
        limit,
        event,
    )
    return [_event_row(r) for r in rows]


async def all_events(conn: asyncpg.Connection, workspace_id: str, person_id: str) -> list[EventRow]:
    rows = await conn.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM events WHERE workspace_id = $1 AND person_id = $2::uuid ORDER BY event_time",
        workspace_id,
        person_id,
    )
    return [_event_row(r) for r in rows]


async def move_events(conn: asyncpg.Connection, workspace_id: str, from_ids: Sequence[str], to_id: str) -> int:
    await conn.execute(
        "UPDATE event_keys SET person_id = $3 WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])",
        workspace_id,
        list(from_ids),
        to_id,
    )
    status = await conn.execute(
        "UPDATE events SET person_id = $3 WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])",
        workspace_id,
        list(from_ids),
        to_id,
    )
    return int(status.split()[-1])


async def move_events_by_identifier(
    conn: asyncpg.Connection, workspace_id: str, from_id: str, to_id: str, identifiers: Sequence[str]
) -> list[str]:
    """Move the events of ``from_id`` resolved from any of ``identifiers``; returns their message ids."""
    rows = await conn.fetch(
        """UPDATE events SET person_id = $3
           WHERE workspace_id = $1 AND person_id = $2::uuid AND identifiers && $4::text[]
           RETURNING message_id""",
        workspace_id,
        from_id,
        to_id,
        list(identifiers),
    )
    moved = [r["message_id"] for r in rows]
    await conn.execute(
        "UPDATE event_keys SET person_id = $3 WHERE workspace_id = $1 AND message_id = ANY($2::text[])",
        workspace_id,
        moved,
        to_id,
    )
    return moved


# Aliases --------------------------------------------------------------------------------------


async def survivors(conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]) -> dict[str, str]:
    rows = await conn.fetch(
        """SELECT person_id::text, survivor_id::text FROM person_aliases
           WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])""",
        workspace_id,
        list(person_ids),
    )
    return {r["person_id"]: r["survivor_id"] for r in rows}


async def add_aliases(
    conn: asyncpg.Connection, workspace_id: str, merged: Sequence[str], survivor: str, versions: Sequence[int]
) -> None:
    # Persons merged into a merged person before now point at the new survivor too.
    await conn.execute(
        "UPDATE person_aliases SET survivor_id = $3 WHERE workspace_id = $1 AND survivor_id = ANY($2::uuid[])",
        workspace_id,
        list(merged),
        survivor,
    )
    await conn.execute(
        """INSERT INTO person_aliases (workspace_id, person_id, survivor_id, last_version)
           SELECT $1, p, $3, v FROM unnest($2::uuid[], $4::bigint[]) AS x(p, v)
           ON CONFLICT (workspace_id, person_id) DO UPDATE SET survivor_id = excluded.survivor_id,
               last_version = greatest(person_aliases.last_version, excluded.last_version)""",
        workspace_id,
        list(merged),
        survivor,
        list(versions),
    )


async def repoint_aliases(
    conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str], survivor: str
) -> None:
    """``person_ids`` (merged away earlier) resolve to ``survivor`` from now on."""
    await conn.execute(
        """UPDATE person_aliases SET survivor_id = $3
           WHERE workspace_id = $1 AND person_id = ANY($2::uuid[]) AND person_id <> $3""",
        workspace_id,
        list(person_ids),
        survivor,
    )


async def remove_alias(conn: asyncpg.Connection, workspace_id: str, person_id: str) -> int:
    """Forget that ``person_id`` was merged away; returns the last version it had."""
    version = await conn.fetchval(
        "DELETE FROM person_aliases WHERE workspace_id = $1 AND person_id = $2 RETURNING last_version",
        workspace_id,
        person_id,
    )
    return version or 0


# Profiles -------------------------------------------------------------------------------------

_PROFILE_COLUMNS = """person_id::text AS person_id, traits, pii, trait_meta, event_count, first_seen_at, last_seen_at,
    computed, stats, lifecycle_stage, lifecycle_at, tier, tier_at, tags, consent, points_lots, version,
    merged_person_ids, created_at, updated_at"""


def _stored(row: asyncpg.Record) -> StoredProfile:
    state = ProfileState(
        person_id=row["person_id"],
        traits=row["traits"],
        trait_meta=row["trait_meta"],
        event_count=row["event_count"],
        first_seen_at=row["first_seen_at"],
        last_seen_at=row["last_seen_at"],
        computed=row["computed"],
        stats=row["stats"],
        lifecycle_stage=row["lifecycle_stage"],
        lifecycle_at=row["lifecycle_at"],
        tier=row["tier"],
        tier_at=row["tier_at"],
        tags=row["tags"],
        consent=row["consent"],
        points_lots=row["points_lots"],
        version=row["version"],
    )
    return StoredProfile(
        state, row["pii"], tuple(map(str, row["merged_person_ids"])), row["created_at"], row["updated_at"]
    )


async def lock_profiles(
    conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str], *, skip_locked: bool = False
) -> dict[str, StoredProfile]:
    """The existing profiles among ``person_ids``, locked until commit, in person_id order
    (concurrent batches cannot deadlock); ``skip_locked``: without those another transaction holds."""
    rows = await conn.fetch(
        f"""SELECT {_PROFILE_COLUMNS} FROM profiles
           WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])
           ORDER BY person_id FOR UPDATE{" SKIP LOCKED" if skip_locked else ""}""",
        workspace_id,
        list(person_ids),
    )
    return {r["person_id"]: _stored(r) for r in rows}


@dataclass(frozen=True)
class Prediction:
    """A person's predictions by the model in use (cdp_profile.predictions)."""

    model_id: int
    p_alive: float
    expected_purchases: float
    expected_order_value_minor: int
    predicted_clv_minor: int
    horizon_weeks: int
    fit_time: datetime


async def read_profile(
    conn: asyncpg.Connection, workspace_id: str, person_id: str, *, events: int, orders: int
) -> tuple[StoredProfile, list[EventRow], list[Order], int, Prediction | None] | None:
    """The profile of ``person_id`` (or of its survivor), its recent events and orders, the
    workspace's settings version and the person's predictions, in one round trip (GetProfile is
    on storefronts' hot path)."""
    row = await conn.fetchrow(
        f"""WITH target AS (
               SELECT coalesce((SELECT survivor_id FROM person_aliases WHERE workspace_id = $1 AND person_id = $2),
                               $2) AS id
           )
           SELECT {_PROFILE_COLUMNS},
                  array(SELECT row({_EVENT_FIELDS_IN_RECORD}) FROM events e
                        WHERE e.workspace_id = $1 AND e.person_id = p.person_id
                        ORDER BY e.event_time DESC, e.message_id DESC LIMIT $3) AS recent_events,
                  array(SELECT row(order_id, person_id::text, currency, total_minor, channel, store_id, staff_id,
                                   order_time, items::text, refunds::text, cancelled, points_earned, message_id)
                        FROM orders o
                        WHERE o.workspace_id = $1 AND o.person_id = p.person_id AND o.order_time IS NOT NULL
                        ORDER BY o.order_time DESC, o.order_id DESC LIMIT $4) AS recent_orders,
                  (SELECT coalesce(max(version), 0) FROM settings WHERE workspace_id = $1) AS settings_version,
                  (SELECT row(pr.model_id, pr.p_alive, pr.expected_purchases, pr.expected_order_value_minor,
                              pr.predicted_clv_minor, m.horizon_weeks, m.fit_time)
                   FROM predictions pr
                   JOIN value_models m ON m.workspace_id = pr.workspace_id AND m.model_id = pr.model_id
                   WHERE pr.workspace_id = $1 AND pr.person_id = p.person_id
                   ORDER BY pr.model_id DESC LIMIT 1) AS prediction
           FROM profiles p JOIN target ON p.person_id = target.id
           WHERE p.workspace_id = $1""",
        workspace_id,
        person_id,
        events,
        orders,
    )
    if row is None:
        return None
    return (
        _stored(row),
        [_event_row(r) for r in row["recent_events"]],
        [_order(r) for r in row["recent_orders"]],
        row["settings_version"],
        Prediction(*row["prediction"]) if row["prediction"] else None,
    )


async def list_profile_dates(
    conn: asyncpg.Connection, workspace_id: str, after: str | None, limit: int
) -> list[tuple[str, str | None, datetime | None, int]]:
    """Profiles with a birthday or a next points expiry after person id ``after``, by person id:
    (person id, birthday MM-DD, next expiry, version). One walk of the primary key over the
    pages."""
    rows = await conn.fetch(
        """SELECT person_id::text, computed ->> 'birthday_month_day' AS birthday,
                  computed ->> 'next_points_expiry_time' AS expiry, version
           FROM profiles WHERE workspace_id = $1 AND ($2::uuid IS NULL OR person_id > $2::uuid)
           AND (computed ->> 'birthday_month_day' IS NOT NULL OR computed ->> 'next_points_expiry_time' IS NOT NULL)
           ORDER BY person_id LIMIT $3""",
        workspace_id,
        after,
        limit,
    )
    return [
        (r["person_id"], r["birthday"], datetime.fromisoformat(r["expiry"]) if r["expiry"] else None, r["version"])
        for r in rows
    ]


async def get_profile(conn: asyncpg.Connection, workspace_id: str, person_id: str) -> StoredProfile | None:
    row = await conn.fetchrow(
        f"SELECT {_PROFILE_COLUMNS} FROM profiles WHERE workspace_id = $1 AND person_id = $2::uuid",
        workspace_id,
        person_id,
    )
    return _stored(row) if row else None


async def save_profiles(
    conn: asyncpg.Connection,
    workspace_id: str,
    rows: Sequence[tuple[ProfileState, bytes | None, Sequence[str]]],
) -> None:
    """Upsert profiles: (state whose traits hold no PII, sealed PII traits, person ids merged into it)."""
    if not rows:
        return
    states = [r[0] for r in rows]
    await conn.execute(
        """INSERT INTO profiles (workspace_id, person_id, traits, pii, trait_meta, event_count, first_seen_at,
                                 last_seen_at, computed, stats, lifecycle_stage, lifecycle_at, tier, tier_at, tags,
                                 consent, points_lots, points_balance, version, merged_person_ids)
           SELECT $1, p, t::jsonb, pii, tm::jsonb, c, f, l, cp::jsonb, st::jsonb, ls, la, ti, ta, tg::jsonb,
                  cs::jsonb, pl::jsonb, pb, v, mp::uuid[]
           FROM unnest($2::uuid[], $3::text[], $4::bytea[], $5::text[], $6::bigint[], $7::timestamptz[],
                       $8::timestamptz[], $9::text[], $10::text[], $11::text[], $12::timestamptz[], $13::text[],
                       $14::timestamptz[], $15::text[], $16::text[], $17::text[], $18::bigint[], $19::bigint[],
                       $20::text[])
                AS x(p, t, pii, tm, c, f, l, cp, st, ls, la, ti, ta, tg, cs, pl, pb, v, mp)
           ON CONFLICT (workspace_id, person_id) DO UPDATE SET
               traits = excluded.traits, pii = excluded.pii, trait_meta = excluded.trait_meta,
               event_count = excluded.event_count, first_seen_at = excluded.first_seen_at,
               last_seen_at = excluded.last_seen_at, computed = excluded.computed, stats = excluded.stats,
               lifecycle_stage = excluded.lifecycle_stage, lifecycle_at = excluded.lifecycle_at,
               tier = excluded.tier, tier_at = excluded.tier_at, tags = excluded.tags, consent = excluded.consent,
               points_lots = excluded.points_lots, points_balance = excluded.points_balance,
               version = excluded.version,
               merged_person_ids = excluded.merged_person_ids, updated_at = now()""",
        workspace_id,
        [s.person_id for s in states],
        [_json(s.traits) for s in states],
        [r[1] for r in rows],
        [_json(s.trait_meta) for s in states],
        [s.event_count for s in states],
        [s.first_seen_at for s in states],
        [s.last_seen_at for s in states],
        [_json(s.computed) for s in states],
        [_json(s.stats) for s in states],
        [s.lifecycle_stage for s in states],
        [s.lifecycle_at for s in states],
        [s.tier for s in states],
        [s.tier_at for s in states],
        [_json(s.tags) for s in states],
        [_json(s.consent) for s in states],
        [_json(s.points_lots) for s in states],
        [s.points_balance for s in states],
        [s.version for s in states],
        ["{" + ",".join(r[2]) + "}" for r in rows],
    )


async def delete_profiles(conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]) -> None:
    await conn.execute(
        "DELETE FROM profiles WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])", workspace_id, list(person_ids)
    )
    await conn.execute(
        "DELETE FROM timers WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])", workspace_id, list(person_ids)
    )


# Orders ---------------------------------------------------------------------------------------

_ORDER_COLUMNS = """order_id, person_id::text AS person_id, currency, total_minor, channel, store_id, staff_id,
    order_time, items, refunds, cancelled, points_earned, message_id"""


_ORDER_FIELDS = (
    "order_id",
    "person_id",
    "currency",
    "total_minor",
    "channel",
    "store_id",
    "staff_id",
    "order_time",
    "items",
    "refunds",
    "cancelled",
    "points_earned",
    "message_id",
)


def _order(row: asyncpg.Record | tuple) -> Order:
    if isinstance(row, tuple):
        row = dict(zip(_ORDER_FIELDS, row, strict=True))
        row["items"], row["refunds"] = orjson.loads(row["items"]), orjson.loads(row["refunds"])
    return Order(
        order_id=row["order_id"],
        person_id=row["person_id"],
        currency=row["currency"],
        total_minor=row["total_minor"],
        channel=row["channel"],
        store_id=row["store_id"],
        staff_id=row["staff_id"],
        order_time=row["order_time"],
        items=tuple(OrderLine(**line) for line in row["items"]),
        refunds=row["refunds"],
        cancelled=row["cancelled"],
        points_earned=row["points_earned"],
        message_id=row["message_id"],
    )


async def orders_of(
    conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str], order_ids: Sequence[str] = ()
) -> list[Order]:
    """Every order of ``person_ids``, and the orders ``order_ids`` whoever owns them."""
    rows = await conn.fetch(
        f"""SELECT {_ORDER_COLUMNS} FROM orders
           WHERE workspace_id = $1 AND (person_id = ANY($2::uuid[]) OR order_id = ANY($3::text[]))""",
        workspace_id,
        list(person_ids),
        list(order_ids),
    )
    return [_order(r) for r in rows]


async def upsert_orders(conn: asyncpg.Connection, workspace_id: str, orders: Sequence[Order]) -> None:
    if not orders:
        return
    await conn.execute(
        """INSERT INTO orders (workspace_id, order_id, person_id, status, currency, total_minor, refunded_minor,
                               channel, store_id, staff_id, order_time, items, refunds, cancelled, points_earned,
                               message_id)
           SELECT $1, o, p, s, c, t, r, ch, st, sf, ot, it::jsonb, rf::jsonb, cn, pe, m
           FROM unnest($2::text[], $3::uuid[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::text[],
                       $9::text[], $10::text[], $11::timestamptz[], $12::text[], $13::text[], $14::bool[],
                       $15::bigint[], $16::text[])
                AS x(o, p, s, c, t, r, ch, st, sf, ot, it, rf, cn, pe, m)
           ON CONFLICT (workspace_id, order_id) DO UPDATE SET
               person_id = excluded.person_id, status = excluded.status, currency = excluded.currency,
               total_minor = excluded.total_minor, refunded_minor = excluded.refunded_minor,
               channel = excluded.channel, store_id = excluded.store_id, staff_id = excluded.staff_id,
               order_time = excluded.order_time, items = excluded.items, refunds = excluded.refunds,
               cancelled = excluded.cancelled, points_earned = excluded.points_earned,
               message_id = excluded.message_id, updated_at = now()""",
        workspace_id,
        [o.order_id for o in orders],
        [o.person_id for o in orders],
        [o.status for o in orders],
        [o.currency for o in orders],
        [o.total_minor for o in orders],
        [o.refunded_minor for o in orders],
        [o.channel for o in orders],
        [o.store_id for o in orders],
        [o.staff_id for o in orders],
        [o.order_time for o in orders],
        [_json([line.__dict__ for line in o.items]) for o in orders],
        [_json(dict(o.refunds)) for o in orders],
        [o.cancelled for o in orders],
        [o.points_earned for o in orders],
        [o.message_id for o in orders],
    )


async def list_orders(
    conn: asyncpg.Connection,
    workspace_id: str,
    person_id: str,
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
) -> list[Order]:
    rows = await conn.fetch(
        f"""SELECT {_ORDER_COLUMNS} FROM orders
           WHERE workspace_id = $1 AND person_id = $2::uuid AND order_time IS NOT NULL
             AND ($3::timestamptz IS NULL OR (order_time, order_id) < ($3, $4))
           ORDER BY order_time DESC, order_id DESC
           LIMIT $5""",
        workspace_id,
        person_id,
        before[0] if before else None,
        before[1] if before else "",
        limit,
    )
    return [_order(r) for r in rows]


async def move_orders(
    conn: asyncpg.Connection, workspace_id: str, from_ids: Sequence[str], to_id: str, message_ids: Sequence[str] = ()
) -> list[str]:
    """Move orders of ``from_ids`` to ``to_id`` (only those created by ``message_ids`` when given)."""
    rows = await conn.fetch(
        """UPDATE orders SET person_id = $3, updated_at = now()
           WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])
             AND (cardinality($4::text[]) = 0 OR message_id = ANY($4::text[]))
           RETURNING order_id""",
        workspace_id,
        list(from_ids),
        to_id,
        list(message_ids),
    )
    return [r["order_id"] for r in rows]


# Points ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerRow:
    entry_id: str
    person_id: str
    entry: LedgerEntry


async def insert_ledger(
    conn: asyncpg.Connection, workspace_id: str, entries: Sequence[tuple[str, LedgerEntry]]
) -> list[LedgerRow]:
    if not entries:
        return []
    ids = [new_id() for _ in entries]
    await conn.execute(
        """INSERT INTO points_ledger (workspace_id, person_id, entry_id, kind, points, balance_after, reference,
                                      reason, created_at, expires_at)
           SELECT $1, p, i, k, pt, b, r, rs, c, x
           FROM unnest($2::uuid[], $3::uuid[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::text[],
                       $9::timestamptz[], $10::timestamptz[]) AS u(p, i, k, pt, b, r, rs, c, x)""",
        workspace_id,
        [person for person, _ in entries],
        ids,
        [e.kind for _, e in entries],
        [e.points for _, e in entries],
        [e.balance_after for _, e in entries],
        [e.reference for _, e in entries],
        [e.reason for _, e in entries],
        [e.created_at for _, e in entries],
        [e.expires_at for _, e in entries],
    )
    return [LedgerRow(i, person, e) for i, (person, e) in zip(ids, entries, strict=True)]


def _ledger_row(row: asyncpg.Record) -> LedgerRow:
    return LedgerRow(
        str(row["entry_id"]),
        str(row["person_id"]),
        LedgerEntry(
            row["kind"],
            row["points"],
            row["balance_after"],
            row["reference"],
            row["reason"],
            row["created_at"],
            row["expires_at"],
        ),
    )


async def ledger_entries(
    conn: asyncpg.Connection, workspace_id: str, person_id: str, reference: str
) -> list[LedgerRow]:
    """The entry with ``reference``, and entries a merge kept apart as ``<reference>@<entry id>``."""
    rows = await conn.fetch(
        """SELECT * FROM points_ledger
           WHERE workspace_id = $1 AND person_id = $2::uuid
             AND (reference = $3 OR left(reference, length($3) + 1) = $3 || '@')
           ORDER BY reference = $3 DESC, created_at""",
        workspace_id,
        person_id,
        reference,
    )
    return [_ledger_row(r) for r in rows]


async def list_ledger(
    conn: asyncpg.Connection, workspace_id: str, person_id: str, *, limit: int, before: tuple[datetime, str] | None
) -> list[LedgerRow]:
    rows = await conn.fetch(
        """SELECT * FROM points_ledger
           WHERE workspace_id = $1 AND person_id = $2::uuid
             AND ($3::timestamptz IS NULL OR (created_at, entry_id) < ($3, $4::uuid))
           ORDER BY created_at DESC, entry_id DESC LIMIT $5""",
        workspace_id,
        person_id,
        before[0] if before else None,
        before[1] if before else "00000000-0000-0000-0000-000000000000",
        limit,
    )
    return [_ledger_row(r) for r in rows]


async def move_ledger(
    conn: asyncpg.Connection,
    workspace_id: str,
    from_ids: Sequence[str],
    to_id: str,
    *,
    order_ids: Sequence[str] | None = None,
    references: Sequence[str] = (),
) -> dict[tuple[str, str], str]:
    """Move ledger entries to ``to_id``: all of them, or (``order_ids`` given) those of these
    orders and those with these ``references``.

    References stay unique per person: an entry whose reference the target already holds, or that
    another moving entry holds too (all but the oldest), gets ``@<entry id>`` appended. Returns
    those renames, (old person, old reference) -> new reference, so the lots can follow.
    """
    rows = await conn.fetch(
        """WITH moving AS (
               SELECT l.person_id, l.entry_id, l.reference,
                      EXISTS (SELECT 1 FROM points_ledger t WHERE t.workspace_id = l.workspace_id
                              AND t.person_id = $3 AND t.reference = l.reference) AS taken,
                      row_number() OVER (PARTITION BY l.reference ORDER BY l.created_at, l.entry_id) AS n
               FROM points_ledger l
               WHERE l.workspace_id = $1 AND l.person_id = ANY($2::uuid[])
                 AND ($4::text[] IS NULL OR l.reference = ANY($5::text[])
                      OR split_part(l.reference, ':', 1) = 'order'
                         AND split_part(l.reference, ':', 2) = ANY($4::text[]))
           )
           UPDATE points_ledger l
           SET person_id = $3,
               reference = CASE WHEN m.taken OR m.n > 1 THEN l.reference || '@' || l.entry_id::text
                                ELSE l.reference END
           FROM moving m
           WHERE l.workspace_id = $1 AND l.person_id = m.person_id AND l.entry_id = m.entry_id
           RETURNING m.person_id::text AS person_id, m.reference AS old_reference, l.reference AS new_reference""",
        workspace_id,
        list(from_ids),
        to_id,
        None if order_ids is None else list(order_ids),
        list(references),
    )
    return {
        (r["person_id"], r["old_reference"]): r["new_reference"]
        for r in rows
        if r["old_reference"] != r["new_reference"]
    }


# Timers ---------------------------------------------------------------------------------------


async def set_timers(
    conn: asyncpg.Connection, workspace_id: str, timers: Sequence[tuple[str, datetime | None]]
) -> None:
    # In person order, like the profile locks every writer holds first.
    due = sorted((p, t) for p, t in timers if t is not None)
    gone = sorted(p for p, t in timers if t is None)
    if due:
        await conn.execute(
            """INSERT INTO timers (workspace_id, person_id, due_at)
               SELECT $1, p, d FROM unnest($2::uuid[], $3::timestamptz[]) AS x(p, d)
               ON CONFLICT (workspace_id, person_id) DO UPDATE SET due_at = excluded.due_at, cause = 'time'""",
            workspace_id,
            [p for p, _ in due],
            [t for _, t in due],
        )
    if gone:
        await conn.execute(
            "DELETE FROM timers WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])", workspace_id, gone
        )


async def due_workspaces(conn: asyncpg.Connection, now: datetime) -> list[str]:
    """Workspaces with a due timer: one index probe per workspace that has timers (a loose index
    scan), however many timers are due, so that each gets its round (a large one starves no one)."""
    rows = await conn.fetch(
        """WITH RECURSIVE workspaces AS (
               SELECT min(workspace_id) AS id FROM timers
               UNION ALL
               SELECT (SELECT min(t.workspace_id) FROM timers t WHERE t.workspace_id > w.id)
               FROM workspaces w WHERE w.id IS NOT NULL
           )
           SELECT id FROM workspaces w
           WHERE id IS NOT NULL AND EXISTS (SELECT 1 FROM timers t WHERE t.workspace_id = w.id AND t.due_at <= $1)""",
        now,
    )
    return [r["id"] for r in rows]


async def claim_due_timers(conn: asyncpg.Connection, workspace_id: str, now: datetime, limit: int) -> list[str]:
    """The earliest due timers of a workspace, locked until commit; those another replica holds are skipped."""
    rows = await conn.fetch(
        """SELECT person_id::text FROM timers WHERE workspace_id = $1 AND due_at <= $2
           ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED""",
        workspace_id,
        now,
        limit,
    )
    return [r["person_id"] for r in rows]


async def postpone_timer(conn: asyncpg.Connection, workspace_id: str, person_id: str, due_at: datetime) -> None:
    await conn.execute(
        "UPDATE timers SET due_at = $3 WHERE workspace_id = $1 AND person_id = $2::uuid",
        workspace_id,
        person_id,
        due_at,
    )


async def lock_due_profiles(
    conn: asyncpg.Connection, workspace_id: str, person_ids: Iterable[str], now: datetime
) -> dict[str, str]:
    """Lock the profiles among ``person_ids`` whose timer is still due, skipping those another
    transaction holds (a consumer batch resets their timer itself); returns person -> cause."""
    rows = await conn.fetch(
        """SELECT p.person_id::text, t.cause FROM profiles p
           JOIN timers t ON t.workspace_id = p.workspace_id AND t.person_id = p.person_id
           WHERE p.workspace_id = $1 AND p.person_id = ANY($2::uuid[]) AND t.due_at <= $3
           ORDER BY p.person_id FOR UPDATE OF p SKIP LOCKED""",
        workspace_id,
        sorted(person_ids),
        now,
    )
    return {r["person_id"]: r["cause"] for r in rows}


async def delete_orphan_timers(conn: asyncpg.Connection, workspace_id: str, person_ids: Iterable[str]) -> None:
    """Timers of persons without a profile (merged away meanwhile) are dropped."""
    await conn.execute(
        """DELETE FROM timers t WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])
           AND NOT EXISTS (SELECT 1 FROM profiles p WHERE p.workspace_id = t.workspace_id
                           AND p.person_id = t.person_id)""",
        workspace_id,
        sorted(person_ids),
    )


# Re-evaluation after a settings change ----------------------------------------------------------


async def start_reevaluation(conn: asyncpg.Connection, workspace_id: str, version: int, windows: Sequence[str]) -> None:
    """Re-evaluate every profile of the workspace under ``version`` (from the first person again;
    windows still to rebuild from an unfinished run are kept)."""
    await conn.execute(
        """INSERT INTO reevaluations (workspace_id, version, windows) VALUES ($1, $2, $3)
           ON CONFLICT (workspace_id) DO UPDATE SET
               version = excluded.version, after_person = NULL, started_at = now(),
               windows = ARRAY(SELECT DISTINCT w FROM unnest(reevaluations.windows || excluded.windows) AS w)""",
        workspace_id,
        version,
        list(windows),
    )


async def pending_reevaluations(conn: asyncpg.Connection) -> list[str]:
    return [r["workspace_id"] for r in await conn.fetch("SELECT workspace_id FROM reevaluations ORDER BY started_at")]


async def claim_reevaluation(conn: asyncpg.Connection, workspace_id: str) -> asyncpg.Record | None:
    """The workspace's run, locked until commit (another replica skips it)."""
    return await conn.fetchrow(
        """SELECT version, after_person::text AS after_person, windows FROM reevaluations
           WHERE workspace_id = $1 FOR UPDATE SKIP LOCKED""",
        workspace_id,
    )


async def profiles_after(conn: asyncpg.Connection, workspace_id: str, after: str | None, limit: int) -> list[str]:
    rows = await conn.fetch(
        """SELECT person_id::text FROM profiles WHERE workspace_id = $1 AND ($2::uuid IS NULL OR person_id > $2)
           ORDER BY person_id LIMIT $3""",
        workspace_id,
        after,
        limit,
    )
    return [r["person_id"] for r in rows]


async def advance_reevaluation(conn: asyncpg.Connection, workspace_id: str, after: str) -> None:
    await conn.execute("UPDATE reevaluations SET after_person = $2 WHERE workspace_id = $1", workspace_id, after)


async def finish_reevaluation(conn: asyncpg.Connection, workspace_id: str) -> None:
    await conn.execute("DELETE FROM reevaluations WHERE workspace_id = $1", workspace_id)


async def window_events(
    conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str], events: Sequence[str], since: datetime
) -> list[EventRow]:
    """The events named ``events`` of ``person_ids`` since ``since`` (windowed traits to rebuild)."""
    rows = await conn.fetch(
        f"""SELECT {_EVENT_COLUMNS} FROM events
           WHERE workspace_id = $1 AND person_id = ANY($2::uuid[]) AND event = ANY($3::text[]) AND event_time >= $4""",
        workspace_id,
        list(person_ids),
        list(events),
        since,
    )
    return [_event_row(r) for r in rows]


# First key of the advisory locks on event partitions (the second is the partition number).
PARTITION_LOCK = 0x70726F66


async def lock_partitions(conn: asyncpg.Connection, partitions: Iterable[int]) -> None:
    """Transaction-scoped advisory locks on event partitions, in order."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, p) FROM unnest($2::int[]) AS p ORDER BY p", PARTITION_LOCK, sorted(partitions)
    )


async def try_session_lock(conn: asyncpg.Connection, key: int) -> bool:
    return await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)


async def session_unlock(conn: asyncpg.Connection, key: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", key)


# Stream positions -----------------------------------------------------------------------------


async def stream_position(conn: asyncpg.Connection, name: str) -> int:
    return await conn.fetchval("SELECT sequence FROM stream_positions WHERE name = $1", name) or 0


async def lock_stream_position(conn: asyncpg.Connection, name: str) -> int:
    """The position, locked until commit (one announcement at a time, whoever applies it)."""
    await conn.execute(
        "INSERT INTO stream_positions (name, sequence) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING", name
    )
    return await conn.fetchval("SELECT sequence FROM stream_positions WHERE name = $1 FOR UPDATE", name)


async def set_stream_position(conn: asyncpg.Connection, name: str, sequence: int) -> None:
    await conn.execute(
        "UPDATE stream_positions SET sequence = greatest(sequence, $2), updated_at = now() WHERE name = $1",
        name,
        sequence,
    )


# Settings -------------------------------------------------------------------------------------


async def settings_version(conn: asyncpg.Connection, workspace_id: str) -> int:
    return await conn.fetchval("SELECT coalesce(max(version), 0) FROM settings WHERE workspace_id = $1", workspace_id)


async def load_settings(conn: asyncpg.Connection, workspace_id: str, version: int) -> tuple[dict, datetime] | None:
    row = await conn.fetchrow(
        "SELECT document, created_at FROM settings WHERE workspace_id = $1 AND version = $2", workspace_id, version
    )
    return (row["document"], row["created_at"]) if row else None


async def insert_settings(conn: asyncpg.Connection, workspace_id: str, version: int, document: dict) -> datetime:
    try:
        return await conn.fetchval(
            "INSERT INTO settings (workspace_id, version, document) VALUES ($1, $2, $3::jsonb) RETURNING created_at",
            workspace_id,
            version,
            document,
        )
    except asyncpg.UniqueViolationError:
        return None  # type: ignore[return-value]


async def claim_pii_pass(conn: asyncpg.Connection, rules_version: int) -> tuple[str, str] | None:
    """Where the pass of ``rules_version`` stands, locked until commit (one replica at a time:
    None when another holds it or it is finished)."""
    await conn.execute("INSERT INTO pii_passes (rules_version) VALUES ($1) ON CONFLICT DO NOTHING", rules_version)
    row = await conn.fetchrow(
        """SELECT after_workspace, after_person::text FROM pii_passes
           WHERE rules_version = $1 AND finished_at IS NULL FOR UPDATE SKIP LOCKED""",
        rules_version,
    )
    return (row["after_workspace"], row["after_person"]) if row else None


async def profiles_for_pii_pass(
    conn: asyncpg.Connection, after: tuple[str, str], limit: int
) -> list[tuple[str, str, dict]]:
    """(workspace, person, plaintext traits) of the next ``limit`` profiles after ``after``."""
    rows = await conn.fetch(
        """SELECT workspace_id, person_id::text, traits FROM profiles
           WHERE (workspace_id, person_id) > ($1, $2::uuid) ORDER BY workspace_id, person_id LIMIT $3""",
        after[0],
        after[1],
        limit,
    )
    return [(r["workspace_id"], r["person_id"], r["traits"]) for r in rows]


async def pii_pass_finished(conn: asyncpg.Connection, rules_version: int) -> bool:
    finished = await conn.fetchval("SELECT finished_at FROM pii_passes WHERE rules_version = $1", rules_version)
    return finished is not None


async def advance_pii_pass(conn: asyncpg.Connection, rules_version: int, after: tuple[str, str] | None) -> None:
    """Move the pass on to ``after``, or finish it (None)."""
    if after is None:
        await conn.execute("UPDATE pii_passes SET finished_at = now() WHERE rules_version = $1", rules_version)
    else:
        await conn.execute(
            "UPDATE pii_passes SET after_workspace = $2, after_person = $3::uuid WHERE rules_version = $1",
            rules_version,
            *after,
        )


async def set_sealed_traits(
    conn: asyncpg.Connection, workspace_id: str, person_id: str, traits: dict, sealed: bytes | None
) -> None:
    await conn.execute(
        "UPDATE profiles SET traits = $3::jsonb, pii = $4 WHERE workspace_id = $1 AND person_id = $2",
        workspace_id,
        person_id,
        traits,
        sealed,
    )


# Objects --------------------------------------------------------------------------------------

_OBJECT_COLUMNS = {
    "product": ("sku", "display_name", "category", "brand", "price_minor", "currency"),
    "store": ("code", "display_name", "city", "region_code", "address"),
    "staff": ("display_name", "store_id"),
}
OBJECT_TABLES = {kind: (table, key, _OBJECT_COLUMNS[kind]) for kind, (table, key) in OBJECT_KINDS.items()}


async def get_objects(
    conn: asyncpg.Connection, kind: str, workspace_id: str, ids: Sequence[str], *, for_update: bool = False
) -> dict[str, dict]:
    """Objects by id; ``for_update`` locks them until commit, in id order (concurrent batches
    touching the same objects wait for each other instead of deadlocking)."""
    table, key, _ = OBJECT_TABLES[kind]
    rows = await conn.fetch(
        f"SELECT * FROM {table} WHERE workspace_id = $1 AND {key} = ANY($2::text[]) ORDER BY {key}"
        + (" FOR UPDATE" if for_update else ""),
        workspace_id,
        list(ids),
    )
    return {r[key]: dict(r) for r in rows}


async def upsert_objects(conn: asyncpg.Connection, kind: str, workspace_id: str, objects: Sequence[dict]) -> list[dict]:
    """Create or replace objects: one statement, rows written in id order (see get_objects)."""
    table, key, columns = OBJECT_TABLES[kind]
    names = [key, *columns, "tags", "attributes", "tags_version"]
    types = {"price_minor": "bigint", "tags_version": "bigint"}
    ordered = sorted(objects, key=lambda o: o[key])
    arrays = [[_json(o[n]) if n in ("tags", "attributes") else o[n] for o in ordered] for n in names]
    selected = ", ".join(
        "ARRAY(SELECT jsonb_array_elements_text(tags::jsonb))"
        if n == "tags"
        else f"{n}::jsonb"
        if n == "attributes"
        else n
        for n in names
    )
    rows = await conn.fetch(
        f"""INSERT INTO {table} (workspace_id, {", ".join(names)})
            SELECT $1, {selected}
            FROM unnest({", ".join(f"${i + 2}::{types.get(n, 'text')}[]" for i, n in enumerate(names))})
                 WITH ORDINALITY AS x({", ".join(names)}, n)
            ORDER BY n
            ON CONFLICT (workspace_id, {key}) DO UPDATE SET {", ".join(f"{n} = excluded.{n}" for n in names[1:])},
                updated_at = now()
            RETURNING *""",
        workspace_id,
        *arrays,
    )
    saved = {r[key]: dict(r) for r in rows}
    return [saved[o[key]] for o in objects]


async def delete_object(conn: asyncpg.Connection, kind: str, workspace_id: str, object_id: str) -> bool:
    table, key, _ = OBJECT_TABLES[kind]
    status = await conn.execute(f"DELETE FROM {table} WHERE workspace_id = $1 AND {key} = $2", workspace_id, object_id)
    return status.endswith(" 1")


async def list_objects(conn: asyncpg.Connection, kind: str, workspace_id: str, after: str, limit: int) -> list[dict]:
    table, key, _ = OBJECT_TABLES[kind]
    rows = await conn.fetch(
        f"SELECT * FROM {table} WHERE workspace_id = $1 AND {key} > $2 ORDER BY {key} LIMIT $3",
        workspace_id,
        after,
        limit,
    )
    return [dict(r) for r in rows]
