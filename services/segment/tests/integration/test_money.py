"""Money rules add only orders in the workspace currency (as profile's computed
total_spent_minor does): the live path and a refresh, from decoded announcements."""

from __future__ import annotations

from datetime import timedelta

from cdp.events.v1 import events_pb2
from cdp_segment.consumers import decode_profile_changed
from cdp_segment.domain import Segment

from .live_env import START, WS, pid

RULES = {
    "big-spender": "orders.sum() >= 10000",
    "big-by-profile": "computed.total_spent_minor >= 10000",
    "small-baskets": "orders.avg() <= 5000",
    "two-orders": "orders.count() >= 2",
}


def announcement(person_id: str, currency: str, spent: int, orders: list[tuple[str, int, str]]) -> bytes:
    message = events_pb2.ProfileChanged(workspace_id=WS, person_id=person_id, version=1)
    message.snapshot.currency = currency
    message.snapshot.computed.update({"total_spent_minor": spent})
    for order_id, total, order_currency in orders:
        fact = message.orders.add(order_id=order_id, status="completed", total_minor=total, currency=order_currency)
        fact.order_time.FromDatetime(START - timedelta(days=1))
    return message.SerializeToString()


async def test_sums_and_averages_add_only_the_workspace_currency(env):
    for segment_id, rule in RULES.items():
        await env.service.create(Segment(WS, segment_id, segment_id, "", rule))
    shanghai, overseas = pid(), pid()
    await env.live.apply_profile_changes(
        [
            # CNY workspace: 50.00 CNY and 200.00 USD; profile's total is 5000 (CNY only)
            decode_profile_changed(announcement(shanghai, "CNY", 5000, [("o-1", 5000, "CNY"), ("o-2", 20000, "USD")])),
            # a USD person (the workspace currency as announced): the USD order counts
            decode_profile_changed(announcement(overseas, "USD", 20000, [("o-3", 20000, "USD"), ("o-4", 100, "CNY")])),
        ]
    )
    live = {s: await env.members(s) for s in RULES}
    assert live == {
        "big-spender": {overseas},
        "big-by-profile": {overseas},
        "small-baskets": {shanghai},
        "two-orders": {shanghai, overseas},
    }
    for segment_id, rule in RULES.items():  # a refresh (SQL) agrees
        await env.service.create(Segment(WS, f"{segment_id}-refreshed", segment_id, "", rule))
        assert await env.members(f"{segment_id}-refreshed") == live[segment_id]
