"""A profile outage delays messages; it does not use their provider attempts. Campaign alone:
its profile target answers nothing (UNAVAILABLE, over real gRPC)."""

from __future__ import annotations

from datetime import timedelta

from ..conftest import eventually, new_person


async def test_messages_wait_out_a_profile_outage_without_being_dead_lettered(start_campaign):
    c = await start_campaign(real=False)  # CDP_CAMPAIGN_MAX_ATTEMPTS=3, backoff 60 s, 120 s
    mail = {"channel": "email", "template": {"subject": "s", "body": "b"}}
    await c.journey("hello", {"trigger": {"event": {"name": "Joined"}}, "steps": [{"id": "m", "send": mail}]})
    await c.track(new_person(), "Joined")
    await eventually(lambda: c.deliveries("hello"), what="the delivery")
    for _ in range(6):  # 45 minutes of outage
        await c.tick()
        c.clock.advance(timedelta(minutes=7, seconds=30))
    (delivery,) = await c.deliveries("hello")
    assert (delivery.status, delivery.attempts) == ("pending", 0)
    assert delivery.reason.startswith("waiting for profile: GetProfile: UNAVAILABLE")
