"""Time moves membership with no new data: durable timers (one row per person and windowed
segment, due at the exact window edge) fire on a ManualClock; nothing is rescanned."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from .harness import START, event_fact, order_fact, person, snapshot


async def timers_of(segment, person_id: str) -> dict[str, object]:
    rows = await segment.sql("SELECT segment_id, due_at FROM timers WHERE person_id = $1::uuid", person_id)
    return {r["segment_id"]: r["due_at"] for r in rows}


async def wait_for_timers(segment, person_id: str, count: int) -> dict[str, object]:
    for _ in range(100):
        found = await timers_of(segment, person_id)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"timers of {person_id}: {found}")


async def test_no_order_in_90_days_admits_exactly_when_90_days_pass(segment):
    rule = "orders.count() >= 1 and orders.count(within 90d) = 0"
    await segment.create("lapsed-live", rule)  # before the data: the live path sets the timer
    ordered = START - timedelta(days=10)
    buyer = person()
    await segment.profile(
        buyer,
        1,
        snapshot(computed={"last_order_time": ordered.isoformat(), "order_count": 1}),
        orders=[order_fact("o-1", ordered, 5000)],
    )
    await wait_for_timers(segment, buyer, 1)
    await segment.create("lapsed-refreshed", rule)  # after the data: the SQL refresh sets it
    await segment.create("lapsed-by-trait", "computed.last_order_time more than 90d ago")
    due = ordered + timedelta(days=90)
    assert await wait_for_timers(segment, buyer, 3) == {
        "lapsed-live": due,
        "lapsed-refreshed": due,
        "lapsed-by-trait": due,
    }

    segment.clock.set(due - timedelta(seconds=1))
    await segment.quiet(0.5)  # the timer worker polls every 50 ms: nothing is due yet
    assert not await segment.is_member("lapsed-live", buyer)

    segment.clock.set(due)
    changes = await segment.changes(3)
    assert {(c.segment_id, c.person_id, c.entered, c.reason) for c in changes} == {
        (s, buyer, True, "time passed") for s in ("lapsed-live", "lapsed-refreshed", "lapsed-by-trait")
    }
    since = await segment.sql("SELECT DISTINCT since FROM memberships WHERE person_id = $1::uuid", buyer)
    assert [r["since"] for r in since] == [due]
    # Nothing in these rules can change for this person by time alone any more.
    assert await timers_of(segment, buyer) == {}


async def test_a_window_exit_fires_on_time_and_a_new_visit_moves_the_timer(segment):
    await segment.create("visited", 'event("Store Visited", within 180d)')
    visitor = person()
    first = START - timedelta(days=100)
    await segment.profile(visitor, 1, snapshot(), events=[event_fact("Store Visited", first)])
    [entered] = await segment.changes(1)
    assert entered.entered and entered.reason == "profile change"
    assert await wait_for_timers(segment, visitor, 1) == {"visited": first + timedelta(days=180)}

    segment.clock.set(START + timedelta(days=30))
    again = segment.clock.now()
    await segment.profile(visitor, 2, snapshot(), events=[event_fact("Store Visited", again)])
    await segment.quiet(0.5)  # still a member: nothing announced

    # The first visit leaves the window first: the timer fires then, finds the person still in
    # (the second visit), and moves on to the second visit's edge.
    segment.clock.set(first + timedelta(days=180))
    for _ in range(100):
        if await timers_of(segment, visitor) == {"visited": again + timedelta(days=180)}:
            break
        await asyncio.sleep(0.05)
    assert await timers_of(segment, visitor) == {"visited": again + timedelta(days=180)}
    await segment.quiet(0.2)

    segment.clock.set(again + timedelta(days=180))
    [exited] = await segment.changes(1)
    assert (exited.entered, exited.reason) == (False, "time passed")
    assert await timers_of(segment, visitor) == {}
