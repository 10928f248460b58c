"""wait.until_time in the person's time zone (the real profile keeps the trait)."""

from __future__ import annotations

from datetime import UTC, datetime

from .campaign_harness import eventually


async def test_wait_until_a_local_time_is_the_persons_local_time(start_campaign):
    c = await start_campaign()  # the workspace is in Asia/Shanghai; it is 10:00 there
    new_yorker = await c.person(email="ny@example.com", time_zone="America/New_York")
    local = await c.person(email="sh@example.com")
    journey = {
        "trigger": {"event": {"name": "Joined"}},
        "steps": [{"id": "w", "wait": {"until_time": "10:00"}}, {"id": "x", "exit": {}}],
    }
    await c.journey("morning", journey)
    await c.track(new_yorker, "Joined")
    await c.track(local, "Joined")

    async def waiting():
        wakes = {i.person_id: i.wake_time.ToDatetime(tzinfo=UTC) for i in await c.instances("morning")}
        # Waiting: woken later than now (a run that still has to read the profile wakes it now).
        return wakes if len(wakes) == 2 and all(at > c.clock.now() for at in wakes.values()) else None

    wakes = await eventually(waiting, what="both waiting")
    assert wakes[new_yorker] == datetime(2026, 6, 18, 14, 0, tzinfo=UTC)  # 10:00 EDT today
    assert wakes[local] == datetime(2026, 6, 19, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai tomorrow
