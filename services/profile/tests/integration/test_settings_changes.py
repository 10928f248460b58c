"""New settings re-evaluate every profile in the background, against real PostgreSQL: no false
transitions from events that come first, no lock on timers, windows rebuilt from stored events."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from .helpers import WS, incoming


async def outbox_transitions(svc, person):
    from cdp.events.v1 import events_pb2

    async with svc.pool.acquire() as conn:
        rows = await conn.fetch("SELECT msg_id, payload FROM outbox WHERE msg_id LIKE $1 ORDER BY seq", f"%{person}%")
    messages = [
        events_pb2.ProfileChanged.FromString(svc._vault.open_bytes(r["payload"], context=f"{WS}/outbox/{r['msg_id']}"))
        for r in rows
    ]
    return [(t.kind, t.from_value, t.to_value, t.cause) for m in messages for t in m.transitions]


async def test_an_event_before_the_reevaluation_derives_the_profile_under_the_new_settings(svc):
    tiers = {"levels": [{"name": "gold", "min": 100}]}
    await svc.update_settings(WS, {"tiers": {"by": "total_spent_minor", **tiers}}, etag="")
    person = str(uuid.uuid4())
    await svc.record_events([incoming(person, "o1", 1, "Order Completed", order_id="O", total=50, currency="CNY")])
    assert (await svc.get_profile(WS, person)).state.tier == "gold"

    await svc.update_settings(WS, {"tiers": {"by": "spend_90d", **tiers}}, etag="")
    await svc.record_events([incoming(person, "v1", 2)])  # before the background re-evaluation
    view = await svc.get_profile(WS, person)
    assert view.state.tier == "gold" and view.state.computed["spend_90d"] == 5000
    assert view.next_due is not None and view.next_due < svc.clock.now() + timedelta(days=91)
    version = view.state.version
    assert await svc.run_reevaluations(500) == 1  # the profile is current: nothing to announce
    assert await svc.run_reevaluations(500) == 0  # done
    assert (await svc.get_profile(WS, person)).state.version == version
    assert [t for t in await outbox_transitions(svc, person) if t[0] == "tier"] == [("tier", "", "gold", "event")]

    # A currency change re-derives money values too (the order is in CNY, the workspace now USD).
    await svc.update_settings(WS, {"currency": "USD"}, etag="")
    await svc.record_events([incoming(person, "v2", 3)])
    view = await svc.get_profile(WS, person)
    assert view.state.computed["total_spent_minor"] == 0 and view.state.tier == ""


async def test_new_settings_neither_wait_for_nor_write_timer_rows(svc):
    people = [str(uuid.uuid4()) for _ in range(3)]
    await svc.update_settings(WS, {"lifecycle": {"dormant_after_days": 30, "churned_after_days": 60}}, etag="")
    await svc.record_events(
        [incoming(p, f"o-{p}", 1, "Order Completed", order_id=f"O-{p}", total=5, currency="CNY") for p in people]
    )
    async with svc.pool.acquire() as conn:
        timers = sorted(tuple(r) for r in await conn.fetch("SELECT person_id::text, due_at, cause FROM timers"))
    assert len(timers) == 3
    # A consumer batch (or the timer worker) holds every profile and timer row of the workspace.
    holder = await svc.pool.acquire()
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT 1 FROM profiles FOR UPDATE")
        await holder.execute("SELECT 1 FROM timers FOR UPDATE")
        await asyncio.wait_for(
            svc.update_settings(WS, {"lifecycle": {"dormant_after_days": 10, "churned_after_days": 60}}, etag=""), 5
        )
        await transaction.rollback()
    finally:
        await svc.pool.release(holder)
    async with svc.pool.acquire() as conn:
        assert sorted(tuple(r) for r in await conn.fetch("SELECT person_id::text, due_at, cause FROM timers")) == timers
    # The background run moves every timer to the new threshold, announcing nothing else.
    assert await svc.run_reevaluations(2) == 2
    assert await svc.run_reevaluations(2) == 1
    assert await svc.run_reevaluations(2) == 0
    async with svc.pool.acquire() as conn:
        due = {r["due_at"] for r in await conn.fetch("SELECT due_at FROM timers")}
        assert await conn.fetchval("SELECT count(*) FROM reevaluations") == 0
    assert len(due) == 1 and due.pop() < timers[0][1]


async def test_a_windowed_trait_declared_later_counts_the_events_already_stored(svc):
    person = str(uuid.uuid4())
    now = svc.clock.now()
    minutes_ago = [int((now - timedelta(days=d)).timestamp() - (now - timedelta(hours=1)).timestamp()) // 60
                   for d in (2, 5, 40)]  # fmt: skip
    await svc.record_events([incoming(person, f"v{i}", m) for i, m in enumerate(minutes_ago)])
    await svc.update_settings(
        WS,
        {
            "windowed_traits": [
                {"name": "views_30d", "event": "Product Viewed", "days": 30},
                {"name": "views_7d", "event": "Product Viewed", "days": 7},
            ]
        },
        etag="",
    )
    await svc.run_reevaluations(500)
    view = await svc.get_profile(WS, person)
    assert view.windowed == {"views_30d": 2, "views_7d": 2}
    # Events after that count on top, and a rebuild again gives the same figures.
    await svc.record_events([incoming(person, "v-new", 1)])
    assert (await svc.get_profile(WS, person)).windowed == {"views_30d": 3, "views_7d": 3}
    await svc.update_settings(
        WS, {"windowed_traits": [{"name": "views_30d", "event": "Product Viewed", "days": 30}]}, etag=""
    )
    await svc.run_reevaluations(500)
    assert (await svc.get_profile(WS, person)).windowed == {"views_30d": 3}
