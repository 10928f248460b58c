"""New settings re-evaluate every profile in the background, against real PostgreSQL: no false
transitions from events that come first, no lock on timers, windows rebuilt from stored events."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from cdp.events.v1 import events_pb2
from cdp_profile.rules import COMPUTED_TRAITS
from cdpkit.errors import InvalidArgument

from .helpers import WS, incoming

IDENTIFY = events_pb2.EVENT_TYPE_IDENTIFY


async def outbox_transitions(svc, person):
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


async def test_a_windowed_trait_cannot_take_the_name_of_a_computed_trait(svc):
    views = {"event": "Product Viewed", "days": 30}
    before, _ = await svc.get_settings(WS)
    for changes in (
        {"windowed_traits": [{"name": "order_count", **views}]},
        {"windowed_traits": [{"name": "views_30d", **views}, {"name": "tier", **views}]},
        {"tiers": {"by": "spend_30d", "levels": [{"name": "gold", "min": 1}]}, "windowed_traits": [
            {"name": "spend_30d", "event": "Order Completed", "days": 30, "sum": "total"}]},
    ):  # fmt: skip
        with pytest.raises(InvalidArgument) as refused:
            await svc.update_settings(WS, changes, etag="")
        index = len(changes["windowed_traits"]) - 1
        assert refused.value.field == f"settings.windowed_traits[{index}].name"
        assert "computed trait" in refused.value.description
    assert (await svc.get_settings(WS))[0] == before

    # A document stored before the rule: the clashing trait is left out, it shadows nothing.
    async with svc.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO settings (workspace_id, version, document) VALUES ($1, $2, $3::jsonb)",
            WS,
            before.version + 1,
            {"tag_rules": [{"tag": "repurchase", "when": "order_count >= 2"}],
             "windowed_traits": [{"name": "order_count", **views}, {"name": "views_30d", **views}]},
        )  # fmt: skip
    prospect, buyer = str(uuid.uuid4()), str(uuid.uuid4())
    await svc.record_events([incoming(prospect, f"v{i}", i) for i in range(3)])
    view = await svc.get_profile(WS, prospect)
    assert view.state.computed["order_count"] == 0 and view.state.computed["views_30d"] == 3
    assert "repurchase" not in view.state.tags
    # Every computed trait the profile derives is one the rule knows.
    await svc.record_events(
        [
            incoming(buyer, "t", 1, type_=IDENTIFY, traits={"birthday": "1990-02-03", "city": "杭州"}),
            incoming(buyer, "o", 2, "Order Completed", order_id="O", total=10, currency="CNY"),
        ]
    )
    await svc.change_points(WS, buyer, "earn", 5, "welcome", "")
    computed = set((await svc.get_profile(WS, buyer)).state.computed) - {"views_30d"}
    assert "birthday_month_day" in computed and "next_points_expiry_time" in computed
    assert computed <= COMPUTED_TRAITS
    # The next change of settings keeps the document without it.
    updated, _ = await svc.update_settings(WS, {"currency": "CNY"}, etag="")
    assert [w.name for w in updated.windowed_traits] == ["views_30d"]


async def test_every_settings_version_is_announced_with_the_time_zone(svc):
    """Segment keeps no copy of its own: it follows this announcement (WorkspaceSettingsChanged)."""
    first = await svc.update_settings(WS, {"time_zone": "America/New_York"}, etag="")
    await svc.update_settings(WS, {"currency": "USD"}, etag="")
    async with svc.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT subject, msg_id, payload FROM outbox WHERE msg_id LIKE 'settings:%' ORDER BY seq"
        )
    announced = [
        (r["subject"], r["msg_id"], events_pb2.WorkspaceSettingsChanged.FromString(r["payload"])) for r in rows
    ]
    version = first[0].version
    assert [
        (subject.rsplit(".", 2)[-2:], msg_id, m.workspace_id, m.version, m.time_zone)
        for subject, msg_id, m in announced
    ] == [
        (["profile", "settings"], f"settings:{WS}:{version}", WS, version, "America/New_York"),
        (["profile", "settings"], f"settings:{WS}:{version + 1}", WS, version + 1, "America/New_York"),
    ]
