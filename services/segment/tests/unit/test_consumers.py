"""Announcements decoded into the projection's terms; bad ones dead-lettered at once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from cdp.events.v1 import events_pb2
from cdp_segment.consumers import decode_object_tags, decode_persons_merged, decode_profile_changed, plain
from cdpkit.consumer import PermanentError

PERSON = str(uuid.uuid4())


def test_a_profile_change_becomes_state_events_orders_and_moves():
    message = events_pb2.ProfileChanged(
        workspace_id="shop", person_id=PERSON, version=7, changed_fields=["tier"], trigger_message_id="m-1"
    )
    message.snapshot.traits.update({"city": "上海", "age": 30, "score": 0.1})
    message.snapshot.pii_traits.extend(["email"])
    message.snapshot.computed.update({"order_count": 2, "last_order_time": "2026-06-01T00:00:00Z"})
    message.snapshot.tier = "gold"
    message.snapshot.consent["sms"] = True
    fact = message.events.add(message_id="e-1", event="Store Visited")
    fact.event_time.FromDatetime(datetime(2026, 6, 1, tzinfo=UTC))
    message.events.add(event="no id")  # cannot be stored once: ignored
    order = message.orders.add(order_id="o-1", status="partially_refunded", total_minor=900, store_id="s-1")
    order.items.add(product_id="p-1", sku="A-1", category="phones")
    message.moved.merged_person_ids.append(str(uuid.uuid4()))

    change = decode_profile_changed(message.SerializeToString())
    assert change.version == 7 and change.changed_fields == {"tier"} and change.trigger_message_id == "m-1"
    state = change.snapshot
    assert state.traits == {"city": "上海", "age": 30, "score": Decimal("0.1")}
    assert isinstance(state.traits["age"], int)
    assert state.pii_traits == {"email"} and state.tier == "gold" and state.lifecycle_stage is None
    assert state.consent == {"sms": True} and state.computed["order_count"] == 2
    assert [(e.message_id, e.name) for e in change.events] == [("e-1", "Store Visited")]
    [o] = change.orders
    assert (o.order_id, o.status, o.total_minor, o.store_id) == ("o-1", "completed", 900, "s-1")
    assert o.items[0].sku == "A-1" and len(change.merged_person_ids) == 1


def test_bad_announcements_are_permanent_errors():
    with pytest.raises(PermanentError):
        decode_profile_changed(b"\xff\xff")
    with pytest.raises(PermanentError, match="person id"):
        decode_profile_changed(events_pb2.ProfileChanged(workspace_id="shop", person_id="p1").SerializeToString())
    with pytest.raises(PermanentError, match="workspace"):
        decode_persons_merged(events_pb2.PersonsMerged(workspace_id="", survivor_person_id=PERSON).SerializeToString())
    with pytest.raises(PermanentError, match="object"):
        decode_object_tags(
            events_pb2.ObjectTagsChanged(workspace_id="shop", object_kind="shelf", object_id="x").SerializeToString()
        )
    tags = decode_object_tags(
        events_pb2.ObjectTagsChanged(
            workspace_id="shop", object_kind="store", object_id="s-1", tags=["a", "b"], version=3
        ).SerializeToString()
    )
    assert (tags.kind, tags.object_id, tags.tags, tags.version) == ("store", "s-1", {"a", "b"}, 3)


def test_struct_numbers_become_exact():
    assert plain({"a": [1.0, 2.5, 1e20], "b": 9007199254740993.0}) == {
        "a": [1, Decimal("2.5"), 100000000000000000000],
        "b": Decimal("9007199254740992.0"),
    }
