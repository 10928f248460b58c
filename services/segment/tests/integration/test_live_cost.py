"""The live path reads only the events its rules can need: a long history of old events is not
loaded again on every change (review 14)."""

from __future__ import annotations

from datetime import timedelta

from cdp_segment import projection
from cdp_segment.domain import Catalogue, Definition, Segment
from cdp_segment.rules import syntax
from cdp_segment.rules.data import EventFact

from .live_env import START, WS, change, pid

RULE = 'event("Viewed", within 7d) and not event("Bought", between 2026-06-01 and 2026-06-19)'


async def test_only_events_inside_the_rules_windows_are_read(env):
    person = pid()
    old = [EventFact("Viewed", START - timedelta(days=30 + n), {}, f"old-{n}") for n in range(300)]
    recent = [EventFact("Viewed", START - timedelta(days=1), {}, "recent"), EventFact("Other", START, {}, "o")]
    bought = [EventFact("Bought", START - timedelta(days=d), {}, f"b-{d}") for d in (2, 40)]
    await env.service.create(Segment(WS, "viewers", "v", "", RULE))
    await env.live.apply_profile_changes([change(person, 1, events=[*old, *recent, *bought])])
    assert await env.members("viewers") == set()  # bought within the promotion
    catalogue = Catalogue([Definition.of("viewers", 1, syntax.parse(RULE))])
    events, _ = catalogue.needs({"viewers"}, START)
    async with env.pool.acquire() as conn:
        read = await projection.read_persons(conn, WS, [person], events=events)
    assert sorted(e.message_id for e in read[person].events) == ["b-2", "recent"]
