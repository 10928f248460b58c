"""Stored events written under older rules of what is personal are rewritten in the background,
against real PostgreSQL: rows of the first format, identify traits and nested properties left in
plaintext by older rules, the old sealed format, a context kept whole; across monthly partitions
and events_history; resumable, idempotent, a workspace's new pii_traits."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime

from google.protobuf import struct_pb2

from cdp.events.v1 import events_pb2
from cdp_profile import upkeep_repository
from cdp_profile.upkeep import EVENT_RULES, EventRewrite

from .helpers import WS, incoming
from .test_event_retention import NOW, at

SECRETS = ["Lei", "lei@shop.io", "Han Meimei", "13912345678", "10.1.2.3", "dev-1", "L-778899"]


def struct(values: dict) -> bytes:
    message = struct_pb2.Struct()
    message.update(values)
    return message.SerializeToString()


async def store_as_before(svc, conn, message_id, person, when, *, type_="track", event="", **columns):
    """An event row as an older version of the service wrote it."""
    await svc._ensure_partitions([when])
    await conn.execute(
        "INSERT INTO event_keys (workspace_id, message_id, person_id, event_time) VALUES ($1, $2, $3, $4)",
        WS, message_id, person, when,
    )  # fmt: skip
    names = ["workspace_id", "message_id", "person_id", "type", "event", "event_time", "received_at", *columns]
    values = [WS, message_id, person, type_, event, when, when, *columns.values()]
    casts = {"traits": "::jsonb", "legacy": "::jsonb"}
    placeholders = ", ".join(f"${i + 1}{casts.get(n, '')}" for i, n in enumerate(names))
    await conn.execute(f"INSERT INTO events ({', '.join(names)}) VALUES ({placeholders})", *values)


async def at_rest(svc) -> bytes:
    async with svc.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT properties, context, coalesce(traits::text, '') AS traits, coalesce(legacy::text, '') AS legacy"
            " FROM events WHERE workspace_id = $1",
            WS,
        )
    return b"".join(r["properties"] + r["context"] + (r["traits"] + r["legacy"]).encode() for r in rows)


async def until_done(rewrite) -> int:
    rounds = 0
    while await rewrite.run():
        rounds += 1
    return rounds


async def test_events_stored_under_older_rules_are_rewritten_resumably_once(svc):
    svc.clock.set(NOW)
    person = str(uuid.uuid4())
    history, month = datetime(2026, 5, 3, tzinfo=UTC), datetime(2028, 2, 9, tzinfo=UTC)
    # Today's consumer stored this one: already current.
    await svc.record_events(
        [incoming(person, "now", at(NOW), "Product Viewed", shipping={"recipientName": "Han Meimei"})]
    )
    async with svc.pool.acquire() as conn:
        # The first format (before migration 0002): properties and context as JSON, nothing sealed.
        await store_as_before(
            svc, conn, "legacy", person, history, event="Checkout Started",
            legacy=json.dumps({"properties": {"email": "lei@shop.io", "sku": "S-1"},
                               "context": {"ip": "10.1.2.3", "app": {"name": "shop"}}}),
        )  # fmt: skip
        # PII rules 1 (exact names): firstName and a nested recipientName in plaintext, the context whole.
        await store_as_before(
            svc, conn, "rules-v1", person, month, type_="identify",
            traits=json.dumps({"set": {"firstName": "Lei", "plan": "gold"}, "set_once": {}, "unset": []}),
            context=struct({"ip": "10.1.2.3", "device": {"id": "dev-1", "model": "iPhone15,2"}, "locale": "zh-CN"}),
        )  # fmt: skip
        await store_as_before(
            svc, conn, "nested", person, month, event="Order Completed",
            properties=struct({"order_id": "O-1", "shipping": {"recipientName": "Han Meimei",
                                                               "mobile": "13912345678"}}),
        )  # fmt: skip
        # The first sealed format: top-level PII-named properties under "properties".
        sealed = svc._vault.seal(json.dumps({"properties": {"email": "lei@shop.io"}}), context=f"{WS}/event/old-seal")
        await store_as_before(svc, conn, "old-seal", person, month, event="Coupon Redeemed", pii=sealed)
        current_pii = await conn.fetchval("SELECT pii FROM events WHERE message_id = 'now'")
    before = await at_rest(svc)
    assert all(s.encode() in before for s in ["Lei", "Han Meimei", "10.1.2.3", "dev-1"])

    # Two events a batch; a restart (a new worker) after the first batch goes on from the position.
    assert await EventRewrite(svc, svc.pool, batch=2).run() == 2
    rounds = await until_done(EventRewrite(svc, svc.pool, batch=2))
    assert rounds == 2  # 5 events: 2 + 2 + 1

    stored = await at_rest(svc)
    for secret in SECRETS:
        assert secret.encode() not in stored, secret
    assert b"iPhone15,2" in stored and b"zh-CN" in stored and b"S-1" in stored and b"gold" in stored
    async with svc.pool.acquire() as conn:
        progress = await conn.fetchrow("SELECT * FROM event_passes WHERE rules = $1", EVENT_RULES)
        assert await conn.fetchval("SELECT pii FROM events WHERE message_id = 'now'") == current_pii  # untouched
        assert await conn.fetchval("SELECT count(*) FROM events WHERE legacy IS NOT NULL") == 0
    assert progress["finished_at"] is not None and (progress["examined"], progress["rewritten"]) == (5, 4)

    # Nothing is lost: what the API shows and what rebuilds replay is as sent.
    view = await svc.get_profile(WS, person)
    shown = {row.message_id: svc.properties_of(row) for row, _ in view.recent_events}
    assert shown["legacy"]["email"] == "lei@shop.io" and shown["legacy"]["sku"] == "S-1"
    assert shown["nested"]["shipping"]["recipientName"] == "Han Meimei"
    assert shown["old-seal"]["email"] == "lei@shop.io"
    replayed = {row.message_id: svc._new_event(row) for row, _ in view.recent_events}
    assert replayed["rules-v1"].traits == {"firstName": "Lei", "plan": "gold"}

    # Idempotent: the same rules again rewrite nothing.
    async with svc.pool.acquire() as conn:
        await conn.execute("UPDATE event_passes SET finished_at = NULL, after_workspace = '', after_message = ''")
    await until_done(EventRewrite(svc, svc.pool, batch=100))
    async with svc.pool.acquire() as conn:
        assert await conn.fetchval("SELECT rewritten FROM event_passes WHERE rules = $1", EVENT_RULES) == 4


async def test_a_workspace_that_names_a_new_personal_trait_has_its_events_sealed(svc):
    person = str(uuid.uuid4())
    identify = events_pb2.EVENT_TYPE_IDENTIFY
    await svc.record_events(
        [
            incoming(person, "i1", 1, "", type_=identify, traits={"loyalty_no": "L-778899", "plan": "gold"}),
            incoming(person, "v1", 2, "Product Viewed", member={"loyalty_no": "L-778899"}),
        ]
    )
    rewrite = EventRewrite(svc, svc.pool, batch=100)
    await until_done(rewrite)  # today's rules: current
    assert b"L-778899" in await at_rest(svc)

    await svc.update_settings(WS, {"pii_traits": ["loyalty_no"]}, etag="")
    await until_done(rewrite)
    while await svc.run_reevaluations(500):  # the profiles: sealed by the re-evaluation
        pass
    assert b"L-778899" not in await at_rest(svc)
    async with svc.pool.acquire() as conn:
        assert "L-778899" not in await conn.fetchval("SELECT traits::text FROM profiles WHERE person_id = $1", person)
    view = await svc.get_profile(WS, person)
    shown = {row.message_id: svc.properties_of(row) for row, _ in view.recent_events}
    assert shown["v1"]["member"]["loyalty_no"] == "L-778899"
    assert view.state.traits["loyalty_no"] == "L-778899"


async def test_the_consumer_does_not_wait_for_a_batch_of_the_pass(svc, monkeypatch):
    person = str(uuid.uuid4())
    await svc.record_events([incoming(person, f"v{i}", i) for i in range(3)])
    holding, release = asyncio.Event(), asyncio.Event()
    rewrite_events = upkeep_repository.rewrite_events

    async def slow_rewrite(conn, rows):
        holding.set()  # the batch holds its events locked until it commits
        await release.wait()
        await rewrite_events(conn, rows)

    monkeypatch.setattr(upkeep_repository, "rewrite_events", slow_rewrite)
    batch = asyncio.create_task(EventRewrite(svc, svc.pool, batch=100).run())
    await asyncio.wait_for(holding.wait(), 10)
    # New events of the same person are stored and applied meanwhile.
    await asyncio.wait_for(svc.record_events([incoming(person, "v9", 9)]), 5)
    assert (await svc.get_profile(WS, person)).state.event_count == 4
    release.set()
    assert await batch == 3
