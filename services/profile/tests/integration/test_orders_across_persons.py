"""Orders that another person's events touch, and refunds in other currencies or by products,
against real PostgreSQL."""

from __future__ import annotations

import uuid

from .helpers import WS, incoming


def completed(person, message_id, minutes, order_id, total, currency="CNY", **extra):
    return incoming(
        person, message_id, minutes, "Order Completed", order_id=order_id, total=total, currency=currency, **extra
    )


async def orders_table(svc):
    async with svc.pool.acquire() as conn:
        rows = await conn.fetch("SELECT order_id, person_id::text, status, total_minor, refunded_minor FROM orders")
    return {r["order_id"]: tuple(r)[1:] for r in rows}


async def test_an_order_another_person_completed_is_left_alone_and_counts_once(svc):
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    await svc.record_events([completed(a, "oa", 1, "O-A", 500)])
    # b's batch: b's own order, and a duplicate Order Completed of a's order (mis-resolved).
    await svc.record_events([completed(b, "ob", 2, "O-B", 10), completed(b, "dup", 3, "O-A", 500)])
    vb = await svc.get_profile(WS, b)
    assert vb.state.computed["order_count"] == 1 and vb.state.computed["total_spent_minor"] == 1000
    assert "repurchase" not in vb.state.tags and vb.state.event_count == 2
    va = await svc.get_profile(WS, a)
    assert va.state.computed["order_count"] == 1 and va.state.computed["total_spent_minor"] == 50000
    assert (await orders_table(svc))["O-A"] == (a, "completed", 50000, 0)

    # Both in one batch (two persons completing one order id): the earlier one owns it.
    c, d = str(uuid.uuid4()), str(uuid.uuid4())
    await svc.record_events([completed(d, "od", 5, "O-CD", 20), completed(c, "oc", 4, "O-CD", 20)])
    assert (await orders_table(svc))["O-CD"][:2] == (c, "completed")
    assert (await svc.get_profile(WS, d)).state.computed["order_count"] == 0


async def test_a_refund_resolved_to_another_person_changes_the_buyers_order(svc):
    await svc.update_settings(WS, {"points": {"per_currency_unit": 1, "expire_after_days": 365}}, etag="")
    buyer, agent = str(uuid.uuid4()), str(uuid.uuid4())
    # Before the order completed: the refund waits on a pending order; the buyer's completion takes it over.
    await svc.record_events([incoming(agent, "r1", 5, "Order Refunded", order_id="O-1", total=10)])
    assert (await orders_table(svc))["O-1"][:2] == (agent, "pending")
    await svc.record_events([completed(buyer, "o1", 1, "O-1", 100)])
    bought = await svc.get_profile(WS, buyer)
    assert bought.state.computed["order_count"] == 1 and bought.state.computed["total_spent_minor"] == 9000
    assert bought.state.points_balance == 90
    assert (await orders_table(svc))["O-1"] == (buyer, "partially_refunded", 10000, 1000)
    agent_view = await svc.get_profile(WS, agent)
    assert agent_view.state.computed["order_count"] == 0 and agent_view.state.event_count == 1

    # After it completed: a full refund by the agent lowers the buyer's spend and points.
    version = bought.state.version
    await svc.record_events([incoming(agent, "r2", 9, "Order Refunded", order_id="O-1")])
    refunded = await svc.get_profile(WS, buyer)
    assert refunded.state.computed["total_spent_minor"] == 0 and refunded.state.computed["order_count"] == 0
    assert refunded.state.points_balance == 0 and refunded.state.version == version + 1
    assert refunded.state.event_count == 1  # the refund is the agent's event
    assert (await orders_table(svc))["O-1"] == (buyer, "refunded", 10000, 10000)
    async with svc.pool.acquire() as conn:
        announced = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE msg_id = $1", f"profile:{WS}:{buyer}:{version + 1}"
        )
    assert announced == 1

    # Completion and another person's refund in one batch.
    other_buyer = str(uuid.uuid4())
    await svc.record_events(
        [
            completed(other_buyer, "o2", 20, "O-2", 50),
            incoming(agent, "r3", 21, "Order Refunded", order_id="O-2", total=5),
        ]
    )
    assert (await orders_table(svc))["O-2"] == (other_buyer, "partially_refunded", 5000, 500)
    assert (await svc.get_profile(WS, other_buyer)).state.computed["total_spent_minor"] == 4500


async def test_refunds_are_read_in_the_currency_of_their_order_and_by_products(svc):
    person = str(uuid.uuid4())
    # A refund before its order: read once the order (in yen, no minor units) is known.
    await svc.record_events([incoming(person, "r1", 5, "Order Refunded", order_id="J-1", total=1000)])
    await svc.record_events([completed(person, "o1", 1, "J-1", 5000, currency="JPY")])
    assert (await orders_table(svc))["J-1"][2:] == (5000, 1000)

    # A refund in another currency takes nothing off (it cannot be compared); logged.
    await svc.record_events([completed(person, "o2", 10, "C-1", 100)])
    await svc.record_events([incoming(person, "r2", 11, "Order Refunded", order_id="C-1", total=10, currency="USD")])
    assert (await orders_table(svc))["C-1"][1:] == ("completed", 10000, 0)

    # Segment's partial refund: the products refunded, no amount.
    products = [
        {"product_id": "p-1", "price": 30, "quantity": 2},
        {"product_id": "p-2", "price": 40, "quantity": 1},
    ]
    await svc.record_events([completed(person, "o3", 20, "C-2", 100, products=products)])
    await svc.record_events(
        [incoming(person, "r3", 21, "Order Refunded", order_id="C-2", products=[{"product_id": "p-1", "quantity": 1}])]
    )
    assert (await orders_table(svc))["C-2"][1:] == ("partially_refunded", 10000, 3000)
    await svc.record_events(
        [incoming(person, "r4", 22, "Order Refunded", order_id="C-2", products=[{"product_id": "p-2"}])]
    )
    assert (await orders_table(svc))["C-2"][1:] == ("partially_refunded", 10000, 7000)
    view = await svc.get_profile(WS, person)
    # CNY is the workspace currency: 100 - 0 (USD refund ignored) + 100 - 70.
    assert view.state.computed["total_spent_minor"] == 13000 and view.state.computed["order_count"] == 3
