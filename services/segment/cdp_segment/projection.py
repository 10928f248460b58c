"""SQL for the projection tables: write what rules need, read one person back for the live path."""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import asyncpg

from cdp_segment.rules.data import EventFact, ItemFact, OrderFact, PersonFacts, WorkspaceFacts


def _plain(value: Any) -> Any:
    """JSON-ready: Decimals become int or float (exact for the short decimals traits carry)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _json(value: Any) -> str:
    return json.dumps(_plain(value), ensure_ascii=False)


async def upsert_person(conn: asyncpg.Connection, workspace_id: str, person: PersonFacts, version: int = 0) -> None:
    await conn.execute(
        """INSERT INTO persons (workspace_id, person_id, traits, computed, lifecycle_stage, tier, rfm_group, tags,
                                consent, profile_version)
           VALUES ($1, $2, $3::text::jsonb, $4::text::jsonb, $5, $6, $7, $8, $9::text::jsonb, $10)
           ON CONFLICT (workspace_id, person_id) DO UPDATE SET
             traits = excluded.traits, computed = excluded.computed, lifecycle_stage = excluded.lifecycle_stage,
             tier = excluded.tier, rfm_group = excluded.rfm_group, tags = excluded.tags, consent = excluded.consent,
             profile_version = excluded.profile_version, updated_at = now()""",
        workspace_id,
        person.person_id,
        _json(person.traits),
        _json(person.computed),
        person.lifecycle_stage,
        person.tier,
        person.rfm_group,
        sorted(person.tags),
        _json(person.consent),
        version,
    )


async def add_events(conn: asyncpg.Connection, workspace_id: str, person_id: str, events: Iterable[EventFact]) -> None:
    rows = [(workspace_id, e.message_id, person_id, e.name, _json(e.properties), e.time) for e in events]
    if rows:
        await conn.executemany(
            """INSERT INTO person_events (workspace_id, message_id, person_id, name, properties, event_time)
               VALUES ($1, $2, $3, $4, $5::text::jsonb, $6) ON CONFLICT DO NOTHING""",
            rows,
        )


async def upsert_orders(
    conn: asyncpg.Connection, workspace_id: str, person_id: str, orders: Iterable[OrderFact]
) -> None:
    for order in orders:
        await conn.execute(
            """INSERT INTO person_orders (workspace_id, order_id, person_id, status, total_minor, store_id, staff_id,
                                          order_time)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
               ON CONFLICT (workspace_id, order_id) DO UPDATE SET status = excluded.status,
                 total_minor = excluded.total_minor, person_id = excluded.person_id""",
            workspace_id,
            order.order_id,
            person_id,
            order.status,
            order.total_minor,
            order.store_id,
            order.staff_id,
            order.time,
        )
        await conn.execute(
            "DELETE FROM order_items WHERE workspace_id = $1 AND order_id = $2", workspace_id, order.order_id
        )
        if order.items:
            await conn.executemany(
                """INSERT INTO order_items (workspace_id, order_id, line_no, sku, category, product_id)
                   VALUES ($1, $2, $3, $4, $5, $6)""",
                [(workspace_id, order.order_id, n, i.sku, i.category, i.product_id) for n, i in enumerate(order.items)],
            )


async def set_memberships(conn: asyncpg.Connection, workspace_id: str, person_id: str, segments: Iterable[str]) -> None:
    await conn.executemany(
        "INSERT INTO memberships (workspace_id, segment_id, person_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        [(workspace_id, s, person_id) for s in segments],
    )


async def set_object_tags(
    conn: asyncpg.Connection, workspace_id: str, kind: str, object_id: str, tags: Iterable[str]
) -> None:
    await conn.execute(
        "DELETE FROM object_tags WHERE workspace_id = $1 AND object_kind = $2 AND object_id = $3",
        workspace_id,
        kind,
        object_id,
    )
    await conn.executemany(
        "INSERT INTO object_tags (workspace_id, object_kind, object_id, tag) VALUES ($1, $2, $3, $4)",
        [(workspace_id, kind, object_id, t) for t in tags],
    )


async def read_person(conn: asyncpg.Connection, workspace_id: str, person_id: str) -> PersonFacts | None:
    row = await conn.fetchrow(
        "SELECT * FROM persons WHERE workspace_id = $1 AND person_id = $2::uuid", workspace_id, person_id
    )
    if row is None:
        return None
    events = await conn.fetch(
        """SELECT message_id, name, properties, event_time FROM person_events
           WHERE workspace_id = $1 AND person_id = $2::uuid""",
        workspace_id,
        person_id,
    )
    orders = await conn.fetch(
        "SELECT * FROM person_orders WHERE workspace_id = $1 AND person_id = $2::uuid", workspace_id, person_id
    )
    items = await conn.fetch(
        """SELECT i.order_id, i.sku, i.category, i.product_id FROM order_items i
           JOIN person_orders o ON o.workspace_id = i.workspace_id AND o.order_id = i.order_id
           WHERE o.workspace_id = $1 AND o.person_id = $2::uuid ORDER BY i.order_id, i.line_no""",
        workspace_id,
        person_id,
    )
    by_order: dict[str, list[ItemFact]] = {}
    for item in items:
        by_order.setdefault(item["order_id"], []).append(ItemFact(item["sku"], item["category"], item["product_id"]))
    memberships = await conn.fetch(
        "SELECT segment_id FROM memberships WHERE workspace_id = $1 AND person_id = $2::uuid", workspace_id, person_id
    )
    return PersonFacts(
        person_id=person_id,
        traits=row["traits"],
        computed=row["computed"],
        lifecycle_stage=row["lifecycle_stage"],
        tier=row["tier"],
        rfm_group=row["rfm_group"],
        tags=frozenset(row["tags"]),
        consent=row["consent"],
        events=[EventFact(e["name"], e["event_time"], e["properties"], e["message_id"]) for e in events],
        orders=[
            OrderFact(
                o["order_id"],
                o["order_time"],
                o["total_minor"],
                o["status"],
                o["store_id"],
                o["staff_id"],
                tuple(by_order.get(o["order_id"], ())),
            )
            for o in orders
        ],
        memberships=frozenset(m["segment_id"] for m in memberships),
    )


async def read_object_tags(conn: asyncpg.Connection, workspace_id: str, person: PersonFacts) -> WorkspaceFacts:
    """Tags of the stores, staff and products the person's orders touch (all a rule can ask)."""
    wanted = {("store", o.store_id) for o in person.orders} | {("staff", o.staff_id) for o in person.orders}
    wanted |= {("product", i.product_id) for o in person.orders for i in o.items}
    if not wanted:
        return WorkspaceFacts()
    kinds, ids = zip(*wanted, strict=True)
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
