"""Concurrent writers against real PostgreSQL: one lock order everywhere, timers shared fairly."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from .helpers import WS, incoming


def product(i, tags=()):
    return {
        "product_id": f"P-{i:03d}", "sku": f"A-{i}", "display_name": "", "category": "", "brand": "",
        "price_minor": i, "currency": "", "tags": list(tags), "attributes": {"n": i}, "tags_version": 0,
    }  # fmt: skip


async def test_overlapping_batch_upserts_in_opposite_orders_do_not_deadlock(svc):
    ids = range(60)
    await svc.upsert_objects("product", WS, [product(i) for i in ids])
    for round_ in range(3):
        # Objects new to both calls (inserted: nothing to lock beforehand), then objects both update.
        batch = range(100 * (round_ + 1), 100 * (round_ + 1) + 30) if round_ < 2 else ids
        forward = [product(i, [f"r{round_}"]) for i in batch]
        backward = [product(i, [f"r{round_}", "b"]) for i in reversed(batch)]
        results = await asyncio.gather(
            svc.upsert_objects("product", WS, forward),
            svc.upsert_objects("product", WS, backward),
            return_exceptions=True,
        )
        assert not [r for r in results if isinstance(r, BaseException)], results
    saved = await svc.list_objects("product", WS, "", 60)
    assert len(saved) == 60 and {tuple(p["tags"]) for p in saved} in ({("r2",)}, {("r2", "b")})
    assert [p["product_id"] for p in saved] == sorted(p["product_id"] for p in saved)
    # Tags with quotes and commas survive the array round trip; the order of the request is kept.
    odd = [product(7, ['a"b', "c,d"]), product(3)]
    assert [p["product_id"] for p in await svc.upsert_objects("product", WS, odd)] == ["P-007", "P-003"]
    assert (await svc.get_object("product", WS, "P-007"))["tags"] == ['a"b', "c,d"]


async def test_timers_are_shared_by_workers_and_every_workspace_gets_its_turn(svc):
    await svc.update_settings(WS, {"lifecycle": {"new_within_days": 1}}, etag="")
    await svc.update_settings("small", {"lifecycle": {"new_within_days": 1}}, etag="")
    big = [str(uuid.uuid4()) for _ in range(30)]
    await svc.record_events(
        [incoming(p, f"o-{p}", 1, "Order Completed", order_id=f"O-{p}", total=5, currency="CNY") for p in big]
    )
    small = str(uuid.uuid4())
    event = incoming(small, "o-small", 2, "Order Completed", order_id="O-small", total=5, currency="CNY")
    event.workspace_id = "small"
    await svc.record_events([event])
    svc.clock.set(svc.clock.now() + timedelta(days=2))
    # Two workers at once, 10 per workspace and round: together they take disjoint timers, and the
    # small workspace is served in the first round although the big one has more, earlier timers.
    done = await asyncio.gather(svc.run_timers(10), svc.run_timers(10))
    assert sum(done) == 21 and (await svc.get_profile("small", small)).state.lifecycle_stage == "active"
    while await svc.run_timers(10):
        pass
    stages = {(await svc.get_profile(WS, p)).state.lifecycle_stage for p in big}
    assert stages == {"active"}
    async with svc.pool.acquire() as conn:
        announced = await conn.fetch(
            "SELECT msg_id FROM outbox WHERE msg_id LIKE $1 AND msg_id LIKE '%:2'", f"profile:{WS}:%"
        )
    assert len(announced) == 30  # each profile changed once by time: no timer fired twice
