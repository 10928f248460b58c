"""Profile's announcements in a batch: one person's odd event never loses the others' (campaign
alone: the announcements are made here as profile makes them)."""

from __future__ import annotations

from cdp.events.v1 import events_pb2

from ..conftest import WS, new_person


def _added(person_id: str, message_id: str, **properties) -> events_pb2.ProfileChanged:
    change = events_pb2.ProfileChanged(workspace_id=WS, person_id=person_id, version=1, trigger_message_id=message_id)
    fact = change.events.add(message_id=message_id, event="Product Added", type=events_pb2.EVENT_TYPE_TRACK)
    fact.properties.update(properties)
    return change


async def test_a_nul_or_a_nan_in_one_event_does_not_fail_the_batch(start_campaign):
    c = await start_campaign(real=False)
    wait = {"id": "w", "wait": {"duration": "1h"}}
    await c.journey("cart", {"trigger": {"event": {"name": "Product Added"}}, "steps": [wait]})
    good, nul, nan = new_person(), new_person(), new_person()
    batch = [
        _added(good, "m-1", name="Mug"),
        _added(nul, "m-2", name="a\x00b", **{"k\x00": "v"}),
        _added(nan, "m-3", name="Tea", price=float("nan"), sizes=[1, float("inf")]),
    ]
    # The consumer's handler, as the kit calls it with one batch of NATS messages.
    await c.runtime.runner.on_profile_changes(batch)
    rows = await c.runtime.pool.fetch("SELECT person_id, context FROM instances WHERE journey_id = 'cart'")
    contexts = {r["person_id"]: r["context"]["event"]["properties"] for r in rows}
    assert contexts[good] == {"name": "Mug"}
    assert contexts[nul] == {"name": "ab", "k": "v"}  # NUL removed
    assert contexts[nan] == {"name": "Tea", "sizes": [1.0]}  # numbers that are not finite dropped


def _dates(person_id: str, version: int, **computed) -> events_pb2.ProfileChanged:
    change = events_pb2.ProfileChanged(workspace_id=WS, person_id=person_id, version=version)
    change.snapshot.currency = "CNY"
    change.snapshot.computed.update(computed)
    return change


async def test_removed_date_attributes_stop_date_triggers_and_a_replay_cannot_bring_them_back(start_campaign):
    c = await start_campaign(real=False)
    runner, pool, person = c.runtime.runner, c.runtime.pool, new_person()

    async def birthdays():
        return await pool.fetch("SELECT person_id FROM person_dates WHERE birthday_month_day = '06-20'")

    await runner.on_profile_changes([_dates(person, 1, birthday_month_day="06-20")])
    assert len(await birthdays()) == 1
    await runner.on_profile_changes([_dates(person, 3)])  # the birthday was removed
    assert not await birthdays()
    await runner.on_profile_changes([_dates(person, 2, birthday_month_day="06-20")])  # a late replay
    assert not await birthdays()


async def test_a_merge_keeps_the_merged_person_s_dates_where_the_survivor_has_none(start_campaign):
    c = await start_campaign(real=False)
    runner, pool = c.runtime.runner, c.runtime.pool
    survivor, merged, other_survivor, other_merged = (new_person() for _ in range(4))
    await runner.on_profile_changes(
        [
            _dates(merged, 4, birthday_month_day="06-20", next_points_expiry_time="2026-07-01T00:00:00Z"),
            _dates(other_survivor, 2, birthday_month_day="03-01", next_points_expiry_time="2026-09-01T00:00:00Z"),
            _dates(other_merged, 5, birthday_month_day="06-20", next_points_expiry_time="2026-08-01T00:00:00Z"),
        ]
    )
    merges = [
        events_pb2.PersonsMerged(workspace_id=WS, survivor_person_id=s, merged_person_ids=[m], merge_id=f"m-{n}")
        for n, (s, m) in enumerate(((survivor, merged), (other_survivor, other_merged)))
    ]
    await runner.on_merges(merges)
    rows = await pool.fetch("SELECT person_id, birthday_month_day, points_expiry_at, profile_version FROM person_dates")
    dates = {
        r["person_id"]: (r["birthday_month_day"], r["points_expiry_at"].date().isoformat(), r["profile_version"])
        for r in rows
    }
    assert dates == {
        survivor: ("06-20", "2026-07-01", 0),  # had none: the merged person's, until profile says
        other_survivor: ("03-01", "2026-08-01", 2),  # its own birthday, the earlier expiry
    }
    # The survivor's next announcement decides (the merged profile without a birthday here).
    await runner.on_profile_changes([_dates(survivor, 1)])
    assert await pool.fetchval("SELECT birthday_month_day FROM person_dates WHERE person_id = $1", survivor) is None
