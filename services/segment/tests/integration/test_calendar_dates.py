"""Calendar dates in rules are the workspace's (Asia/Shanghai by default): the 618 promotion
window "between 2026-06-01 and 2026-06-19" starts and ends at midnight in Shanghai."""

from __future__ import annotations

from datetime import UTC, datetime

from cdp_segment.domain import Segment
from cdp_segment.rules.data import OrderFact

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
