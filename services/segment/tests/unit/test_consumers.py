"""Announcements decoded into the projection's terms; bad ones dead-lettered at once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from google.protobuf import struct_pb2

from cdp.events.v1 import events_pb2
from cdp_segment.consumers import (
    ADJUSTED,
    Cleaner,
    decode_identity,
    decode_object_tags,
    decode_persons_merged,
    decode_profile_changed,
    decode_workspace_settings,
)
from cdp_segment.domain import WorkspaceZone
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
    settings = events_pb2.WorkspaceSettingsChanged(workspace_id="shop", version=4, time_zone="Europe/Berlin")
    assert decode_workspace_settings(settings.SerializeToString()) == WorkspaceZone("shop", "Europe/Berlin", 4)
    for zone in ("Mars/Olympus", "", "../etc"):
        settings.time_zone = zone
        with pytest.raises(PermanentError, match="time zone"):
            decode_workspace_settings(settings.SerializeToString())


def test_struct_numbers_become_exact():
    struct = struct_pb2.Struct()
    struct.update({"a": [1.0, 2.5, 1e20], "b": 9007199254740993.0, "c": 1.7976931348623157e308})
    assert Cleaner().struct(struct) == {
        "a": [1, Decimal("2.5"), 100000000000000000000],
        "b": Decimal("9007199254740992.0"),
        "c": Decimal("1.7976931348623157E+308"),
    }


def adjusted(reason: str) -> float:
    return ADJUSTED.labels(reason)._value.get()


def test_one_bad_value_is_adjusted_with_a_reason_and_the_rest_of_the_announcement_kept():
    message = events_pb2.ProfileChanged(workspace_id="shop", person_id=PERSON, version=2)
    message.snapshot.traits.update({"score": float("nan"), "note\x00": "a\x00b", "ok": 1})
    message.snapshot.tags.append("v\x00ip")
    message.values.update({"points_balance": 1e300, "tier": 5, "tags": "vip", "traits.ok": 1})
    good = message.events.add(message_id="e-1", event="Viewed")
    good.event_time.FromDatetime(datetime(2026, 6, 1, tzinfo=UTC))
    good.properties.update({"inf": float("inf"), "text": "x\x00"})
    far = message.events.add(message_id="e-2", event="Viewed")
    far.event_time.seconds = 253402300800  # the year 10000: not a time Python (or this service) holds
    message.orders.add(order_id="o\x00-1", status="completed", total_minor=1).order_time.FromDatetime(
        datetime(2026, 6, 1, tzinfo=UTC)
    )
    before = {r: adjusted(r) for r in ("nul", "not_a_number", "time_out_of_range", "bad_value")}

    change = decode_profile_changed(message.SerializeToString())
    assert change.snapshot.traits == {"score": None, "note\ufffd": "a\ufffdb", "ok": 1}
    assert change.snapshot.tags == {"v\ufffdip"}
    assert change.values == {"points_balance": None, "tier": None, "tags": None, "traits.ok": 1}
    assert [(e.message_id, e.properties) for e in change.events] == [("e-1", {"inf": None, "text": "x\ufffd"})]
    assert [o.order_id for o in change.orders] == ["o\ufffd-1"]
    assert {r: adjusted(r) - n for r, n in before.items()} == {
        "nul": 5,
        "not_a_number": 2,
        "time_out_of_range": 1,
        "bad_value": 3,
    }


def test_identity_announcements_by_subject():
    other = str(uuid.uuid4())
    split = events_pb2.PersonSplit(workspace_id="shop", person_id=PERSON, new_person_id=other)
    decoded = decode_identity("cdp.identity.person_split", split.SerializeToString())
    assert (decoded.person_id, decoded.new_person_id) == (PERSON, other)
    assert decode_identity("cdp.identity.identifiers_linked", b"anything") is None
    with pytest.raises(PermanentError, match="person id"):
        decode_identity("cdp.identity.person_split", split.__class__(workspace_id="shop").SerializeToString())
