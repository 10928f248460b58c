"""A recurring broadcast after downtime, with the real segment service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .campaign_harness import eventually


async def test_a_recurring_broadcast_skips_the_runs_missed_while_down(start_campaign):
    c = await start_campaign()
    await c.create_segment("newsletter", "traits.newsletter = true")
    reader = await c.person(email="reader@example.com", newsletter=True)
    await eventually(lambda: c.is_member("newsletter", reader), what="the member")
    mail = {"channel": "email", "template": {"subject": "News", "body": "."}}
    daily = {"segment_id": "newsletter", "start": "2026-06-18T11:00", "every": "1d"}  # Shanghai
    await c.journey("daily", {"trigger": {"schedule": daily}, "steps": [{"id": "m", "send": mail}]})
    # Down from before the first run for three days: back at 11:30 on the fourth day.
    c.clock.set(datetime(2026, 6, 21, 3, 30, tzinfo=UTC))
    await c.tick()
    assert [(i.person_id, i.trigger_key) for i in await c.instances("daily")] == [
        (reader, "run:2026-06-18T03:00:00+00:00")
    ]
    journey = await c.runtime.pool.fetchval("SELECT next_run_at FROM journeys WHERE journey_id = 'daily'")
    assert journey == datetime(2026, 6, 22, 3, 0, tzinfo=UTC)  # the next slot after now
    c.clock.advance(timedelta(days=1))
    await c.tick()
    assert len(await c.instances("daily")) == 2
