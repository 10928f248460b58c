"""Cross-sell audiences ("bought trekking poles, has not bought its usual companions") from the
projection's order lines, mined with cdp_analytics.crosssell; checked against hand counts."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest

from cdp.segment.v1 import segment_pb2

from .harness import START, WS, order_fact, person, running_segment, snapshot

PARENT = f"workspaces/{WS}"
# person -> baskets (orders) of skus
BASKETS = {
    "p1": [["POLE", "JACKET"]],
    "p2": [["POLE", "JACKET", "BOOTS"]],
    "p3": [["POLE", "BOOTS"]],
    "p4": [["POLE", "JACKET"]],
    "p5": [["TENT"]],
    "p6": [["TENT", "STOVE"]],
    "p7": [["POLE"]],
    "p8": [["POLE"], ["JACKET"]],
    "p9": [["JACKET"]],
}


async def load_baskets(segment) -> dict[str, str]:
    ids = {name: person() for name in BASKETS}
    n = 0
    for name, baskets in BASKETS.items():
        orders = []
        for basket in baskets:
            n += 1
            items = tuple((f"prod-{sku}", sku, "outdoor") for sku in basket)
            orders.append(order_fact(f"o-{n}", START, 1000, items=items))
        await segment.profile(ids[name], 1, snapshot(), orders=orders)
    await wait_orders(segment, n)
    return ids


async def wait_orders(segment, n: int) -> None:
    for _ in range(200):
        if (await segment.sql("SELECT count(*) AS n FROM person_orders"))[0]["n"] == n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{n} orders never reached the projection")


async def test_companions_and_cross_sell_audiences(segment):
    ids = await load_baskets(segment)

    # 10 baskets; POLE in 6, JACKET in 5, BOOTS in 2; POLE+JACKET 3, POLE+BOOTS 2.
    listed = await segment.stub.ListProductCompanions(
        segment_pb2.ListProductCompanionsRequest(parent=PARENT, sku="POLE")
    )
    assert (listed.baskets, listed.baskets_with_product) == (10, 6)
    assert [(c.sku, c.together) for c in listed.companions] == [("BOOTS", 2), ("JACKET", 3)]
    boots, jacket = listed.companions
    assert boots.confidence == pytest.approx(2 / 6) and boots.lift == pytest.approx((2 / 6) / (2 / 10))
    assert jacket.support == pytest.approx(3 / 10) and jacket.lift == pytest.approx(1.0)

    built = await segment.stub.BuildCrossSellSegment(
        segment_pb2.BuildCrossSellSegmentRequest(parent=PARENT, sku="POLE")
    )
    assert built.segment.name == f"{PARENT}/segments/cross-sell-pole" and built.segment.builtin == "cross_sell"
    assert built.segment.rule == (
        'orders.count(product.sku = "POLE") >= 1 and orders.count(product.sku = "BOOTS") = 0'
        ' and orders.count(product.sku = "JACKET") = 0'
    )
    assert await segment.members("cross-sell-pole") == {ids["p7"]}

    # Only strong companions (lift >= 1.5): boots; everyone with poles but no boots.
    strong = await segment.stub.BuildCrossSellSegment(
        segment_pb2.BuildCrossSellSegmentRequest(
            parent=PARENT, sku="POLE", segment_id="poles-no-boots", filter=segment_pb2.CoPurchaseFilter(min_lift=1.5)
        )
    )
    assert [c.sku for c in strong.companions] == ["BOOTS"]
    assert await segment.members("poles-no-boots") == {ids[p] for p in ("p1", "p4", "p7", "p8")}

    # Both refreshes announced their members.
    entered = await segment.changes(5)
    assert {(c.segment_id, c.person_id, c.entered) for c in entered} == {
        ("cross-sell-pole", ids["p7"], True),
        *(("poles-no-boots", ids[p], True) for p in ("p1", "p4", "p7", "p8")),
    }

    # Live: the audience loses p7 when p7 buys boots. Re-mining versions the rule only when the
    # companions change.
    await segment.profile(
        ids["p7"],
        2,
        snapshot(),
        orders=[order_fact("o-99", START, 1000, items=(("prod-BOOTS", "BOOTS", "outdoor"),))],
        changed=("orders",),
    )
    left = await segment.changes(2)
    assert {(c.segment_id, c.entered) for c in left} == {("cross-sell-pole", False), ("poles-no-boots", False)}
    again = await segment.stub.BuildCrossSellSegment(
        segment_pb2.BuildCrossSellSegmentRequest(parent=PARENT, sku="POLE", max_companions=1)
    )
    assert again.segment.version == 2 and [c.sku for c in again.companions] == ["BOOTS"]
    same = await segment.stub.BuildCrossSellSegment(
        segment_pb2.BuildCrossSellSegmentRequest(parent=PARENT, sku="POLE", max_companions=1)
    )
    assert same.segment.version == 2

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await segment.stub.BuildCrossSellSegment(segment_pb2.BuildCrossSellSegmentRequest(parent=PARENT, sku="TENT"))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await segment.stub.BuildCrossSellSegment(
            segment_pb2.BuildCrossSellSegmentRequest(
                parent=PARENT, sku="POLE", segment_id="poles-no-boots", max_companions=99
            )
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_companions_come_from_counts_kept_fresh_on_a_schedule(service_env, nats_url):
    """The counts are stored (one SQL pass) and recounted when older than the interval on the
    service's clock: a new order shows only after the recount; a window of days is mined now."""
    async with running_segment(service_env, nats_url, CDP_SEGMENT_CROSSSELL_INTERVAL_SECONDS="0.2") as segment:
        ids = await load_baskets(segment)
        request = segment_pb2.ListProductCompanionsRequest(parent=PARENT, sku="POLE")
        first = await segment.stub.ListProductCompanions(request)
        assert [(c.sku, c.together) for c in first.companions] == [("BOOTS", 2), ("JACKET", 3)]
        assert first.compute_time.ToDatetime(START.tzinfo) == START
        stored = await segment.sql("SELECT baskets FROM co_purchase_counts WHERE sku = 'POLE' AND companion = ''")
        assert [r["baskets"] for r in stored] == [6]

        await segment.profile(
            ids["p7"],
            2,
            snapshot(),
            orders=[order_fact("o-99", START, 1000, items=(("prod-BOOTS", "POLE", "outdoor"), ("b", "BOOTS", "x")))],
            changed=("orders",),
        )
        await wait_orders(segment, 11)
        assert (await segment.stub.ListProductCompanions(request)).companions == first.companions  # as counted
        window = await segment.stub.ListProductCompanions(
            segment_pb2.ListProductCompanionsRequest(
                parent=PARENT, sku="POLE", filter=segment_pb2.CoPurchaseFilter(window_days=30)
            )
        )
        # 11 baskets, POLE in 7: JACKET (3 of 7, in 5 of 11) falls below lift 1.
        assert [(c.sku, c.together) for c in window.companions] == [("BOOTS", 3)]

        segment.clock.advance(timedelta(seconds=1))  # the counts are now older than the interval
        for _ in range(100):
            fresh = await segment.stub.ListProductCompanions(request)
            if fresh.baskets == 11:
                break
            await asyncio.sleep(0.05)
        assert [(c.sku, c.together) for c in fresh.companions] == [("BOOTS", 3)]
        assert fresh.compute_time.ToDatetime(START.tzinfo) == START + timedelta(seconds=1)
