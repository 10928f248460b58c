"""Calendar dates in rules are the workspace's: the 618 promotion window "between 2026-06-01 and
2026-06-19" starts and ends at midnight in the workspace time zone (profile's settings, announced;
CDP_SEGMENT_TIME_ZONE, Asia/Shanghai by default, until then)."""

from __future__ import annotations

from datetime import UTC, datetime

from cdp.segment.v1 import segment_pb2
from cdp_segment.domain import Segment
from cdp_segment.rules.data import OrderFact

from .harness import WS as HARNESS_WS
from .harness import person as harness_person
from .harness import snapshot
from .live_env import WS, change, pid

PROMOTION = "orders.count(between 2026-06-01 and 2026-06-19) >= 1"


async def test_a_promotion_window_is_midnight_to_midnight_in_shanghai(env):
    early = pid()  # 2026-06-01 01:00 in Shanghai: inside
    late = pid()  # 2026-06-19 01:00 in Shanghai: outside
    before = pid()  # 2026-05-31 23:00 in Shanghai: outside
    orders = {
        early: datetime(2026, 5, 31, 17, tzinfo=UTC),
        late: datetime(2026, 6, 18, 17, tzinfo=UTC),
        before: datetime(2026, 5, 31, 15, tzinfo=UTC),
    }
    created = await env.service.create(Segment(WS, "promo-618", "618", "", PROMOTION))
    assert created.rule == "orders.count(between 2026-06-01+08:00 and 2026-06-19+08:00) >= 1"
    await env.live.apply_profile_changes(
        [change(p, 1, orders=[OrderFact(f"o-{p}", when, 100)]) for p, when in orders.items()]
    )
    assert await env.members("promo-618") == {early}
    # the stored text means the same whatever reads it; a refresh (SQL) agrees
    await env.service.create(Segment(WS, "promo-618-again", "618", "", created.rule))
    assert await env.members("promo-618-again") == {early}
    # renaming does not touch the rule (no new version)
    renamed = await env.service.update(Segment(WS, "promo-618", "618 (Shanghai)", "", ""), ["display_name"])
    assert (renamed.rule, renamed.version) == (created.rule, 1)


async def test_the_workspace_time_zone_comes_from_profile_and_a_change_refreshes_date_rules(segment):
    """Over NATS and gRPC: profile announces the workspace's settings; date-only values are
    midnight in the workspace zone (CDP_SEGMENT_TIME_ZONE until one is announced); a new zone
    re-evaluates the segments that depend on it, announcing the diff; dates written without an
    offset in new rules are in the new zone; an older settings version changes nothing."""
    signed_up = harness_person()
    # "2026-06-18" is 2026-06-17 16:00 UTC in Shanghai: within the last day at 2026-06-18 12:00
    # UTC; in Kiritimati (+14) it is 2026-06-17 10:00 UTC: more than a day ago.
    await segment.profile(signed_up, 1, snapshot(traits={"signup": "2026-06-18"}, tier="gold"))
    await segment.create("new-signups", "traits.signup within last 1d")
    await segment.create("gold", 'tier = "gold"')
    assert {(c.segment_id, c.entered) for c in await segment.changes(2)} == {("new-signups", True), ("gold", True)}

    await segment.settings("Pacific/Kiritimati", 2)
    [left] = await segment.changes(1)
    assert (left.segment_id, left.person_id, left.entered, left.reason) == (
        "new-signups",
        signed_up,
        False,
        "time zone refresh",
    )
    dated = await segment.create("promo", "orders.count(between 2026-06-01 and 2026-06-19) >= 1")
    assert dated.rule == "orders.count(between 2026-06-01+14:00 and 2026-06-19+14:00) >= 1"
    estimate = await segment.stub.EstimateSegment(
        segment_pb2.EstimateSegmentRequest(parent=f"workspaces/{HARNESS_WS}", rule="traits.signup within last 1d")
    )
    assert estimate.count == 0

    await segment.settings("Asia/Shanghai", 1)  # older than the zone in force: ignored
    await segment.quiet()
    assert await segment.members("new-signups") == set()

    await segment.settings("Asia/Shanghai", 3)
    [back] = await segment.changes(1)
    assert (back.segment_id, back.entered, back.reason) == ("new-signups", True, "time zone refresh")
    # the live path reads the new zone too: a second person with the same date enters at once
    other = harness_person()
    await segment.profile(other, 1, snapshot(traits={"signup": "2026-06-18"}))
    [entered] = await segment.changes(1)
    assert (entered.segment_id, entered.person_id, entered.reason) == ("new-signups", other, "profile change")
