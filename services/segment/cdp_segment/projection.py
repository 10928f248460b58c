"""SQL for the projection tables: write what rules need, read persons back for the live path.

The projection is fed only by messages (ProfileChanged, ObjectTagsChanged, PersonsMerged);
every write here is idempotent (events by message id, orders and states by profile version).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from prometheus_client import Counter

from cdp_segment.domain import ProfileState
from cdp_segment.facts import Claim, Lineage, announced
from cdp_segment.rules.data import EventFact, ItemFact, OrderFact, PersonFacts, WorkspaceFacts

STALE_FACTS = Counter(
    "cdp_segment_stale_facts_total", "Announced facts older than the projection's copy (left alone)", ["kind"]
)


def jsonable(value: Any) -> Any:
    """JSON-ready: Decimals become int or float (exact for the short decimals traits carry)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def _json(value: Any) -> str:
    return json.dumps(jsonable(value), ensure_ascii=False)


async def add_events(
    conn: asyncpg.Connection, workspace_id: str, facts: Sequence[tuple[str, EventFact]]
) -> set[tuple[str, str]]:
    """Store (person id, event) facts once each (by message id); an event a split claimed before it
    arrived goes to the claim's person (or its survivor). (person id, name) of the new ones."""
    if not facts:
        return set()
    rows = await conn.fetch(
        """WITH f AS (SELECT * FROM unnest($2::text[], $3::uuid[], $4::text[], $5::text[], $6::timestamptz[])
                      AS e(m, p, n, j, t)),
                claimed AS (
                    DELETE FROM pending_moves c USING f
                    WHERE c.workspace_id = $1 AND c.kind = 'event' AND c.fact_id = f.m
                      AND NOT EXISTS (SELECT 1 FROM person_events x WHERE x.workspace_id = $1 AND x.message_id = f.m)
                    RETURNING c.fact_id, coalesce((SELECT s.survivor_id FROM merged_persons s
                                                   WHERE s.workspace_id = $1 AND s.person_id = c.to_person),
                                                  c.to_person) AS owner)
           INSERT INTO person_events (workspace_id, message_id, person_id, name, properties, event_time)
           SELECT $1, f.m, coalesce(claimed.owner, f.p), f.n, f.j::jsonb, f.t
           FROM f LEFT JOIN claimed ON claimed.fact_id = f.m
           ON CONFLICT DO NOTHING RETURNING person_id::text AS person_id, name""",
        workspace_id,
        [e.message_id for _, e in facts],
        [p for p, _ in facts],
        [e.name for _, e in facts],
        [_json(e.properties) for _, e in facts],
        [e.time for _, e in facts],
    )
    return {(r["person_id"], r["name"]) for r in rows}


@dataclass(frozen=True)
class OrderWrite:
    """An order as ``announcer`` announced it at ``version``; ``owner``: the announcer, or its
    survivor when it was merged away since."""

    announcer: str
    owner: str
    order: OrderFact
    version: int


def _lineage(row: asyncpg.Record) -> Lineage:
    prior = row["prior_writer"]
    return Lineage(
        str(row["person_id"]), str(row["writer"]), row["profile_version"], prior and str(prior), row["prior_version"]
    )


async def _claims(conn: asyncpg.Connection, workspace_id: str, kind: str, fact_ids: Sequence[str]) -> dict[str, Claim]:
    """Take the claims splits made on these facts (deleted: the caller stores the facts now)."""
    if not fact_ids:
        return {}
    rows = await conn.fetch(
        """DELETE FROM pending_moves c WHERE c.workspace_id = $1 AND c.kind = $2 AND c.fact_id = ANY($3::text[])
           RETURNING c.fact_id, c.to_person::text AS to_person, c.version,
                     coalesce((SELECT s.survivor_id FROM merged_persons s
                               WHERE s.workspace_id = $1 AND s.person_id = c.to_person), c.to_person)::text AS owner""",
        workspace_id,
        kind,
        list(fact_ids),
    )
    return {r["fact_id"]: Claim(r["to_person"], r["owner"], r["version"]) for r in rows}


async def write_orders(conn: asyncpg.Connection, workspace_id: str, writes: Sequence[OrderWrite]) -> set[str]:
    """Create or update orders, in the order given, keeping each one's newest announcement
    (cdp_segment.facts); the ids of the persons whose orders changed."""
    if not writes:
        return set()
    ids = sorted({w.order.order_id for w in writes})
    rows = await conn.fetch(
        """SELECT order_id, person_id, writer, profile_version, prior_writer, prior_version FROM person_orders
           WHERE workspace_id = $1 AND order_id = ANY($2::text[]) FOR UPDATE""",
        workspace_id,
        ids,
    )
    stored = {r["order_id"]: _lineage(r) for r in rows}
    claims = await _claims(conn, workspace_id, "order", [i for i in ids if i not in stored])
    final: dict[str, tuple[Lineage, OrderFact]] = {}
    for write in writes:
        order_id = write.order.order_id
        current = final[order_id][0] if order_id in final else stored.get(order_id)
        lineage = announced(current, write.announcer, write.version, write.owner, claims.get(order_id))
        if lineage is None:
            STALE_FACTS.labels("order").inc()
            continue
        final[order_id] = (lineage, write.order)
    if not final:
        return set()
    changed = list(final.items())
    await conn.execute(
        """INSERT INTO person_orders (workspace_id, order_id, person_id, status, total_minor, store_id, staff_id,
                                      order_time, writer, profile_version, prior_writer, prior_version, currency)
           SELECT $1, o, p, s, t, st, sf, ot, w, v, pw, pv, cu
           FROM unnest($2::text[], $3::uuid[], $4::text[], $5::bigint[], $6::text[], $7::text[],
                       $8::timestamptz[], $9::uuid[], $10::bigint[], $11::uuid[], $12::bigint[], $13::text[])
                AS i(o, p, s, t, st, sf, ot, w, v, pw, pv, cu)
           ON CONFLICT (workspace_id, order_id) DO UPDATE SET person_id = excluded.person_id, status = excluded.status,
             total_minor = excluded.total_minor, currency = excluded.currency, store_id = excluded.store_id,
             staff_id = excluded.staff_id,
             order_time = excluded.order_time, writer = excluded.writer, profile_version = excluded.profile_version,
             prior_writer = excluded.prior_writer, prior_version = excluded.prior_version""",
        workspace_id,
        [i for i, _ in changed],
        [lineage.owner for _, (lineage, _) in changed],
        [o.status for _, (_, o) in changed],
        [o.total_minor for _, (_, o) in changed],
        [o.store_id for _, (_, o) in changed],
        [o.staff_id for _, (_, o) in changed],
        [o.time for _, (_, o) in changed],
        [lineage.writer for _, (lineage, _) in changed],
        [lineage.version for _, (lineage, _) in changed],
        [lineage.prior_writer for _, (lineage, _) in changed],
        [lineage.prior_version for _, (lineage, _) in changed],
        [o.currency for _, (_, o) in changed],
    )
    await conn.execute(
        "DELETE FROM order_items WHERE workspace_id = $1 AND order_id = ANY($2::text[])",
        workspace_id,
        [i for i, _ in changed],
    )
    items = [(i, n, item) for i, (_, o) in changed for n, item in enumerate(o.items)]
    if items:
        await conn.execute(
            """INSERT INTO order_items (workspace_id, order_id, line_no, sku, category, product_id)
               SELECT $1, o, n, s, c, p FROM unnest($2::text[], $3::int[], $4::text[], $5::text[], $6::text[])
               AS i(o, n, s, c, p)""",
            workspace_id,
            [o for o, _, _ in items],
            [n for _, n, _ in items],
            [i.sku for _, _, i in items],
            [i.category for _, _, i in items],
            [i.product_id for _, _, i in items],
        )
    return {lineage.owner for lineage, _ in final.values()} | {stored[i].owner for i in final if i in stored}


async def set_object_tags(
    conn: asyncpg.Connection, workspace_id: str, kind: str, object_id: str, tags: Iterable[str]
) -> bool:
    """Replace an object's tags; True when they changed."""
    before = await conn.fetch(
        "DELETE FROM object_tags WHERE workspace_id = $1 AND object_kind = $2 AND object_id = $3 RETURNING tag",
        workspace_id,
        kind,
        object_id,
    )
    tags = sorted(set(tags))
    await conn.execute(
        """INSERT INTO object_tags (workspace_id, object_kind, object_id, tag)
           SELECT $1, $2, $3, unnest($4::text[])""",
        workspace_id,
        kind,
        object_id,
        tags,
    )
    return sorted(r["tag"] for r in before) != tags


async def claim_object_version(conn: asyncpg.Connection, workspace_id: str, kind: str, object_id: str, version: int):
    """True when ``version`` is newer than the last applied one for this object (and records it)."""
    return bool(
        await conn.fetchval(
            """INSERT INTO object_versions (workspace_id, object_kind, object_id, version) VALUES ($1, $2, $3, $4)
               ON CONFLICT (workspace_id, object_kind, object_id) DO UPDATE SET version = excluded.version
               WHERE object_versions.version < excluded.version
               RETURNING true""",
            workspace_id,
            kind,
            object_id,
            version,
        )
    )


async def persons_touching(conn: asyncpg.Connection, workspace_id: str, kind: str, object_id: str) -> list[str]:
    """Persons with an order at this store, served by this staff member, or with this product."""
    if kind == "product":
        query = """SELECT DISTINCT o.person_id FROM order_items i
                   JOIN person_orders o ON o.workspace_id = i.workspace_id AND o.order_id = i.order_id
                   WHERE i.workspace_id = $1 AND i.product_id = $2"""
    else:
        column = {"store": "store_id", "staff": "staff_id"}[kind]
        query = f"SELECT DISTINCT person_id FROM person_orders WHERE workspace_id = $1 AND {column} = $2"
    return [str(r["person_id"]) for r in await conn.fetch(query, workspace_id, object_id)]


# Profile states ------------------------------------------------------------------------------


def _state(row: asyncpg.Record) -> ProfileState:
    return ProfileState(
        traits=row["traits"],
        pii_traits=frozenset(row["pii_traits"]),
        computed=row["computed"],
        lifecycle_stage=row["lifecycle_stage"],
        tier=row["tier"],
        tags=frozenset(row["tags"]),
        consent=row["consent"],
        points_balance=row["points_balance"],
        currency=row["currency"],
    )


async def read_states(
    conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]
) -> dict[str, tuple[ProfileState, int, str | None]]:
    """(state, profile version, RFM group) of the persons the projection knows."""
    rows = await conn.fetch(
        """SELECT person_id, traits, pii_traits, computed, lifecycle_stage, tier, tags, consent, points_balance,
                  currency, profile_version, rfm_group
           FROM persons WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])""",
        workspace_id,
        list(person_ids),
    )
    return {str(r["person_id"]): (_state(r), r["profile_version"], r["rfm_group"]) for r in rows}


async def write_states(
    conn: asyncpg.Connection, workspace_id: str, states: Mapping[str, tuple[ProfileState, int, str | None]]
) -> None:
    """Replace persons' states: person id -> (state, profile version, RFM group)."""
    if not states:
        return
    rows = list(states.items())
    await conn.execute(
        """INSERT INTO persons (workspace_id, person_id, traits, computed, lifecycle_stage, tier, rfm_group, tags,
                                consent, profile_version, pii_traits, points_balance, currency)
           SELECT $1, p, tr::jsonb, co::jsonb, ls, ti, rg, string_to_array(tg, chr(31)), cs::jsonb, v,
                  string_to_array(pi, chr(31)), pb, cu
           FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
                       $9::text[], $10::bigint[], $11::text[], $12::bigint[], $13::text[])
                AS s(p, tr, co, ls, ti, rg, tg, cs, v, pi, pb, cu)
           ON CONFLICT (workspace_id, person_id) DO UPDATE SET
             traits = excluded.traits, computed = excluded.computed, lifecycle_stage = excluded.lifecycle_stage,
             tier = excluded.tier, rfm_group = excluded.rfm_group, tags = excluded.tags, consent = excluded.consent,
             profile_version = excluded.profile_version, pii_traits = excluded.pii_traits,
             points_balance = excluded.points_balance, currency = excluded.currency, updated_at = now()""",
        workspace_id,
        [p for p, _ in rows],
        [_json(dict(s.traits)) for _, (s, _, _) in rows],
        [_json(dict(s.computed)) for _, (s, _, _) in rows],
        [s.lifecycle_stage for _, (s, _, _) in rows],
        [s.tier for _, (s, _, _) in rows],
        [g for _, (_, _, g) in rows],
        [_text_array(s.tags) for _, (s, _, _) in rows],
        [_json(dict(s.consent)) for _, (s, _, _) in rows],
        [v for _, (_, v, _) in rows],
        [_text_array(s.pii_traits) for _, (s, _, _) in rows],
        [s.points_balance for _, (s, _, _) in rows],
        [s.currency for _, (s, _, _) in rows],
    )


def _text_array(values: Iterable[str]) -> str:
    """A set of strings as one text (unit-separator joined): unnest cannot take arrays of arrays."""
    return "\x1f".join(sorted(values))


async def ensure_persons(conn: asyncpg.Connection, workspace_id: str, person_ids: Iterable[str]) -> set[str]:
    """Rows for persons known only through moved facts; the ids of those created."""
    ids = sorted(set(person_ids))
    if not ids:
        return set()
    rows = await conn.fetch(
        """INSERT INTO persons (workspace_id, person_id) SELECT $1, unnest($2::uuid[])
           ON CONFLICT DO NOTHING RETURNING person_id::text AS person_id""",
        workspace_id,
        ids,
    )
    return {r["person_id"] for r in rows}


async def merge_facts(
    conn: asyncpg.Connection, workspace_id: str, survivor: str, merged: Sequence[str], version: int
) -> bool:
    """Every event, order and split claim of the merged persons moves to the survivor (the order
    lineage at ``version``, the survivor's announcing version; 0 when identity announced the
    merge). True when anything moved."""
    moved = 0
    for statement in (
        "UPDATE person_events SET person_id = $2 WHERE workspace_id = $1 AND person_id = ANY($3::uuid[])",
        """UPDATE person_orders SET person_id = $2, writer = $2, profile_version = $4,
               prior_writer = coalesce(prior_writer, writer),
               prior_version = CASE WHEN prior_writer IS NULL THEN profile_version ELSE prior_version END
           WHERE workspace_id = $1 AND person_id = ANY($3::uuid[])""",
        "UPDATE pending_moves SET to_person = $2, version = $4 WHERE workspace_id = $1 AND to_person = ANY($3::uuid[])",
    ):
        args = (workspace_id, survivor, list(merged)) + ((version,) if "$4" in statement else ())
        moved += int((await conn.execute(statement, *args)).split()[-1])
    return moved > 0


async def split_facts(
    conn: asyncpg.Connection,
    workspace_id: str,
    to_person: str,
    version: int,
    *,
    message_ids: Sequence[str],
    order_ids: Sequence[str],
) -> set[str]:
    """A split moved these events and orders to ``to_person`` (announced at ``version``): re-key
    them, and claim those not seen yet. The persons they were moved from."""
    losers: set[str] = set()
    for kind, table, column, ids in (
        ("event", "person_events", "message_id", message_ids),
        ("order", "person_orders", "order_id", order_ids),
    ):
        if not ids:
            continue
        lineage = (
            """, writer = $2, profile_version = $4, prior_writer = coalesce(t.prior_writer, t.writer),
               prior_version = CASE WHEN t.prior_writer IS NULL THEN t.profile_version ELSE t.prior_version END"""
            if kind == "order"
            else ""
        )
        rows = await conn.fetch(
            f"""WITH before AS (SELECT {column} AS id, person_id FROM {table}
                                WHERE workspace_id = $1 AND {column} = ANY($3::text[]) FOR UPDATE),
                     moved AS (UPDATE {table} t SET person_id = $2{lineage} FROM before b
                               WHERE t.workspace_id = $1 AND t.{column} = b.id AND b.person_id <> $2),
                     claimed AS (INSERT INTO pending_moves (workspace_id, kind, fact_id, to_person, version)
                                 SELECT $1, $5, i, $2, $4 FROM unnest($3::text[]) AS i
                                 WHERE NOT EXISTS (SELECT 1 FROM before WHERE before.id = i)
                                 ON CONFLICT (workspace_id, kind, fact_id)
                                 DO UPDATE SET to_person = excluded.to_person, version = excluded.version)
                SELECT DISTINCT person_id::text AS person_id FROM before WHERE person_id <> $2""",
            workspace_id,
            to_person,
            list(ids),
            version,
            kind,
        )
        losers |= {r["person_id"] for r in rows}
    return losers


async def delete_persons(conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]) -> int:
    status = await conn.execute(
        "DELETE FROM persons WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])", workspace_id, list(person_ids)
    )
    return int(status.split()[-1])


async def remember_pii_names(conn: asyncpg.Connection, workspace_id: str, names: Iterable[str]) -> None:
    await conn.execute(
        "INSERT INTO pii_trait_names (workspace_id, name) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
        workspace_id,
        sorted(set(names)),
    )


async def pii_names(conn: asyncpg.Connection, workspace_id: str) -> set[str]:
    rows = await conn.fetch("SELECT name FROM pii_trait_names WHERE workspace_id = $1", workspace_id)
    return {r["name"] for r in rows}


# Reading persons for the in-memory evaluator --------------------------------------------------


async def read_persons(
    conn: asyncpg.Connection,
    workspace_id: str,
    person_ids: Sequence[str],
    *,
    events: Mapping[str, datetime | None] | None = None,
    orders: bool = True,
    known: Mapping[str, tuple[ProfileState, str | None]] | None = None,
) -> dict[str, PersonFacts]:
    """The persons as the evaluators see them. ``events``: only events of these names from that
    time on (None: all of that name); every event when ``events`` is None. No orders when
    ``orders`` is false (the rules being evaluated do not read them). ``known``: (state, RFM
    group) of persons the caller holds already (not read again)."""
    ids = list(person_ids)
    known = {p: known[p] for p in ids if p in known} if known else {}
    persons = {
        person_id: PersonFacts(
            person_id=person_id,
            traits=dict(state.traits),
            computed=dict(state.computed),
            lifecycle_stage=state.lifecycle_stage,
            tier=state.tier,
            rfm_group=group,
            tags=state.tags,
            consent=dict(state.consent),
            points_balance=state.points_balance,
            pii_traits=state.pii_traits,
            currency=state.currency,
        )
        for person_id, (state, group) in known.items()
    }
    unknown = [p for p in ids if p not in known]
    rows = []
    if unknown:
        rows = await conn.fetch(
            "SELECT * FROM persons WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])", workspace_id, unknown
        )
    persons |= {
        str(row["person_id"]): PersonFacts(
            person_id=str(row["person_id"]),
            traits=row["traits"],
            computed=row["computed"],
            lifecycle_stage=row["lifecycle_stage"],
            tier=row["tier"],
            rfm_group=row["rfm_group"],
            tags=frozenset(row["tags"]),
            consent=row["consent"],
            points_balance=row["points_balance"],
            pii_traits=frozenset(row["pii_traits"]),
            currency=row["currency"],
        )
        for row in rows
    }
    ids = list(persons)
    if not persons:
        return persons
    # The persons' memberships and their events in one round trip (an event row has a message id).
    held = "SELECT person_id, segment_id, NULL, NULL::jsonb, NULL::timestamptz FROM memberships m"
    held += " WHERE m.workspace_id = $1 AND m.person_id = ANY($2::uuid[])"
    if events is None:
        rows = await conn.fetch(
            f"""{held} UNION ALL
                SELECT person_id, name, message_id, properties, event_time FROM person_events
                WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])""",
            workspace_id,
            ids,
        )
    elif events:
        # per name, from the earliest time a rule can need (the index is (workspace, person, name, time))
        rows = await conn.fetch(
            f"""{held} UNION ALL
                SELECT e.person_id, e.name, e.message_id, e.properties, e.event_time
                FROM unnest($3::text[], $4::timestamptz[]) AS w(name, since)
                JOIN person_events e ON e.workspace_id = $1 AND e.person_id = ANY($2::uuid[]) AND e.name = w.name
                  AND (w.since IS NULL OR e.event_time >= w.since)""",
            workspace_id,
            ids,
            list(events),
            list(events.values()),
        )
    else:
        rows = await conn.fetch(held, workspace_id, ids)
    held_by: dict[str, set[str]] = {}
    for person_id, name, message_id, properties, event_time in rows:
        if message_id is None:
            held_by.setdefault(str(person_id), set()).add(name)
        else:
            persons[str(person_id)].events.append(EventFact(name, event_time, properties, message_id))
    for person_id, segments in held_by.items():
        persons[person_id].memberships = frozenset(segments)
    if orders:
        order_rows = await conn.fetch(
            """SELECT order_id, person_id, order_time, total_minor, status, store_id, staff_id, currency
               FROM person_orders
               WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])""",
            workspace_id,
            ids,
        )
        items = await conn.fetch(
            """SELECT i.order_id, i.sku, i.category, i.product_id FROM order_items i
               JOIN person_orders o ON o.workspace_id = i.workspace_id AND o.order_id = i.order_id
               WHERE o.workspace_id = $1 AND o.person_id = ANY($2::uuid[]) ORDER BY i.order_id, i.line_no""",
            workspace_id,
            ids,
        )
        by_order: dict[str, list[ItemFact]] = {}
        for item in items:
            by_order.setdefault(item["order_id"], []).append(
                ItemFact(item["sku"], item["category"], item["product_id"])
            )
        for o in order_rows:
            persons[str(o["person_id"])].orders.append(
                OrderFact(
                    o["order_id"],
                    o["order_time"],
                    o["total_minor"],
                    o["status"],
                    o["store_id"],
                    o["staff_id"],
                    tuple(by_order.get(o["order_id"], ())),
                    o["currency"],
                )
            )
    return persons


async def read_object_tags(conn: asyncpg.Connection, workspace_id: str, *persons: PersonFacts) -> WorkspaceFacts:
    """Tags of the stores, staff and products the persons' orders touch (all a rule can ask)."""
    wanted = {("store", o.store_id) for p in persons for o in p.orders}
    wanted |= {("staff", o.staff_id) for p in persons for o in p.orders}
    wanted |= {("product", i.product_id) for p in persons for o in p.orders for i in o.items}
    if not wanted:
        return WorkspaceFacts()
    kinds, ids = zip(*sorted(wanted), strict=True)
    rows = await conn.fetch(
        """SELECT t.object_kind, t.object_id, t.tag FROM object_tags t
           JOIN unnest($2::text[], $3::text[]) AS w(kind, id) ON t.object_kind = w.kind AND t.object_id = w.id
           WHERE t.workspace_id = $1""",
        workspace_id,
        list(kinds),
        list(ids),
    )
    tags: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        tags.setdefault((row["object_kind"], row["object_id"]), set()).add(row["tag"])
    return WorkspaceFacts({key: frozenset(value) for key, value in tags.items()})
