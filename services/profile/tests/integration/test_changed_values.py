"""ProfileChanged tells 1 from true (and 0 from false) at any depth, against real PostgreSQL:
Python's ``1 == True`` must not hide a change from ``changed_fields`` nor from the sealed PII."""

from __future__ import annotations

import uuid

from cdp.events.v1 import events_pb2

from .helpers import WS, incoming

IDENTIFY = events_pb2.EVENT_TYPE_IDENTIFY


async def announced(svc, person):
    async with svc.pool.acquire() as conn:
        rows = await conn.fetch("SELECT msg_id, payload FROM outbox WHERE msg_id LIKE $1 ORDER BY seq", f"%{person}%")
    return [
        events_pb2.ProfileChanged.FromString(svc._vault.open_bytes(r["payload"], context=f"{WS}/outbox/{r['msg_id']}"))
        for r in rows
    ]


async def test_a_trait_turning_from_1_into_true_is_a_change(svc):
    person = str(uuid.uuid4())
    first = {"vip": 1, "prefs": {"sms": 0}, "address": {"city": "杭州", "verified": 1}}
    second = {"vip": True, "prefs": {"sms": False}, "address": {"city": "杭州", "verified": True}}
    await svc.record_events([incoming(person, "i1", 1, "", type_=IDENTIFY, traits=first)])
    await svc.record_events([incoming(person, "i2", 2, "", type_=IDENTIFY, traits=second)])

    last = (await announced(svc, person))[-1]
    assert {"traits.vip", "traits.prefs", "traits.address"} <= set(last.changed_fields)
    assert last.values.fields["traits.vip"].WhichOneof("kind") == "bool_value"
    assert last.values.fields["traits.prefs"].struct_value.fields["sms"].WhichOneof("kind") == "bool_value"
    assert last.snapshot.traits.fields["vip"].WhichOneof("kind") == "bool_value"
    # The sealed PII trait is sealed again with true (not its sealed form of 1 reused).
    svc._opened.clear()
    traits = (await svc.get_profile(WS, person)).state.traits
    assert traits["address"]["verified"] is True and traits["vip"] is True and traits["prefs"]["sms"] is False
