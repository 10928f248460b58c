"""Personal data at rest and on the bus, against real PostgreSQL: trait names in any convention,
nested properties, the event context, the outbox."""

from __future__ import annotations

import uuid

from cdp.events.v1 import events_pb2
from cdp_profile.consumers import to_incoming

from .helpers import WS, incoming, resolved


async def test_personal_data_is_sealed_whatever_the_naming_and_depth(svc):
    person = str(uuid.uuid4())
    identify = incoming(
        person,
        "i1",
        1,
        "",
        type_=events_pb2.EVENT_TYPE_IDENTIFY,
        traits={
            "firstName": "Lei",
            "Last-Name": "Li",
            "mobile": "13912345678",
            "Email": "lei@shop.io",
            "contact": {"wechat": "leili", "homePhone": "02155550000"},
            "plan": "gold",
        },
    )
    order = resolved(
        person,
        "o1",
        2,
        "Order Completed",
        order_id="O-1",
        total=10,
        shipping={"recipientName": "Han Meimei", "address": {"street": "文三路 1 号", "city": "杭州"}},
        products=[{"product_id": "p-1", "name": "Trekking poles", "giftNote": {"customer_email": "han@shop.io"}}],
    )
    order.event.context.update(
        {
            "ip": "10.1.2.3",
            "device": {"id": "dev-1", "advertisingId": "ad-1", "model": "iPhone15,2", "type": "ios"},
            "location": {"latitude": 30.27, "longitude": 120.15, "city": "Hangzhou"},
            "page": {"url": "https://shop.io/thanks?email=lei@shop.io", "path": "/thanks"},
            "traits": {"email": "lei@shop.io"},
            "app": {"name": "shop", "version": "1.2"},
        }
    )
    await svc.record_events([identify, to_incoming(order)])

    secrets = ["Lei", "13912345678", "lei@shop.io", "02155550000", "Han Meimei", "文三路", "han@shop.io"]
    device_data = ["dev-1", "ad-1", "30.27", "10.1.2.3"]
    async with svc.pool.acquire() as conn:
        profile = await conn.fetchrow("SELECT traits::text, pii FROM profiles")
        events = await conn.fetch("SELECT coalesce(traits::text, '') AS traits, properties, context FROM events")
        outbox = await conn.fetch("SELECT payload, sealed FROM outbox")
    at_rest = profile["traits"] + "".join(e["traits"] for e in events)
    stored = b"".join(e["properties"] + e["context"] for e in events)
    for secret in secrets:
        assert secret not in at_rest and secret.encode() not in stored, secret
    for value in device_data:
        assert value.encode() not in stored, value
    assert '"plan": "gold"' in profile["traits"] and profile["pii"]
    assert b"iPhone15,2" in stored and b"/thanks" in stored and b"Hangzhou" in stored and b"Trekking poles" in stored
    assert outbox and all(row["sealed"] for row in outbox)
    payloads = b"".join(row["payload"] for row in outbox)
    assert b"gold" not in payloads and b"Lei" not in payloads

    # What the API shows is complete again.
    view = await svc.get_profile(WS, person)
    assert view.state.traits["firstName"] == "Lei" and view.state.traits["contact"]["homePhone"] == "02155550000"
    shown = {row.message_id: svc.properties_of(row) for row in [r for r, _ in view.recent_events]}
    properties = shown["o1"]
    assert properties["shipping"]["recipientName"] == "Han Meimei"
    assert properties["shipping"]["address"]["street"] == "文三路 1 号"
    assert properties["products"][0]["giftNote"]["customer_email"] == "han@shop.io"
    assert properties["products"][0]["name"] == "Trekking poles"

    # The announcement names the personal traits, never their values.
    change = svc.snapshot(view.state, view.settings)
    assert sorted(change.pii_traits) == ["Email", "Last-Name", "contact", "firstName", "mobile"]
    assert dict(change.traits) == {"plan": "gold"}
