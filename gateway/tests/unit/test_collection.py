"""The Segment tracking API in pure Python: validation and RawEvent building."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import json_format

from cdp.events.v1 import events_pb2
from cdp_gateway.collection import (
    MAX_EVENT_NAME,
    MAX_ID_LENGTH,
    MAX_SKEW,
    Limits,
    events_from_body,
    parse_time,
    partition_key,
    to_raw_event,
)
from cdpkit.errors import InvalidArgument, PayloadTooLarge

RECEIVED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def collect(call_type: str, body, *, limits: Limits = Limits(), received_at: datetime = RECEIVED):
    return events_from_body(
        body, call_type=call_type, workspace_id="shop", key_id="key_1", received_at=received_at, limits=limits
    )


def one(call_type: str, body, **kwargs) -> events_pb2.RawEvent:
    (event,) = collect(call_type, body, **kwargs)
    return event


def invalid(call_type: str, body, **kwargs) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        collect(call_type, body, **kwargs)
    return caught.value


def struct(value) -> dict:
    return json_format.MessageToDict(value)


def when(event_timestamp) -> datetime:
    return event_timestamp.ToDatetime(tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# Each call type


def test_identify():
    event = one(
        "identify",
        {
            "userId": "u1",
            "anonymousId": "a1",
            "traits": {"email": "a@shop.io", "plan": "pro", "age": 3},
            "context": {"ip": "1.2.3.4", "library": {"name": "analytics.js"}},
            "integrations": {"All": False, "Mixpanel": True},
            "messageId": "m-1",
        },
    )
    assert event.type == events_pb2.EVENT_TYPE_IDENTIFY
    assert event.message_id == "m-1"
    assert event.workspace_id == "shop"
    assert event.source_key_id == "key_1"
    assert (event.user_id, event.anonymous_id, event.previous_id, event.group_id, event.event) == (
        "u1",
        "a1",
        "",
        "",
        "",
    )
    assert struct(event.traits) == {"email": "a@shop.io", "plan": "pro", "age": 3}
    assert struct(event.context) == {"ip": "1.2.3.4", "library": {"name": "analytics.js"}}
    assert struct(event.integrations) == {"All": False, "Mixpanel": True}
    assert not event.HasField("properties")
    assert when(event.received_at) == RECEIVED


def test_identify_rudderstack_traits_under_context():
    event = one("identify", {"anonymousId": "a1", "context": {"traits": {"email": "a@shop.io"}}, "rudderId": "r-1"})
    assert struct(event.traits) == {"email": "a@shop.io"}
    assert struct(event.context) == {"traits": {"email": "a@shop.io"}}


def test_identify_top_level_traits_win_over_context_traits():
    event = one("identify", {"userId": "u1", "traits": {"plan": "pro"}, "context": {"traits": {"plan": "free"}}})
    assert struct(event.traits) == {"plan": "pro"}


def test_context_traits_are_not_traits_for_other_calls():
    event = one("track", {"userId": "u1", "event": "E", "context": {"traits": {"email": "a@shop.io"}}})
    assert not event.HasField("traits")
    assert struct(event.context) == {"traits": {"email": "a@shop.io"}}


def test_track():
    event = one(
        "track",
        {"anonymousId": "a1", "event": "Order Completed", "properties": {"total": 12.5, "items": [1, 2]}},
    )
    assert event.type == events_pb2.EVENT_TYPE_TRACK
    assert event.event == "Order Completed"
    assert event.anonymous_id == "a1"
    assert event.user_id == ""
    assert struct(event.properties) == {"total": 12.5, "items": [1, 2]}
    assert not event.HasField("traits")
    assert not event.HasField("context")
    assert not event.HasField("integrations")


@pytest.mark.parametrize(
    ("call", "kind"), [("page", events_pb2.EVENT_TYPE_PAGE), ("screen", events_pb2.EVENT_TYPE_SCREEN)]
)
def test_page_and_screen(call, kind):
    event = one(call, {"userId": "u1", "name": "Home", "properties": {"path": "/"}})
    assert event.type == kind
    assert event.event == "Home"
    assert struct(event.properties) == {"path": "/"}
    assert one(call, {"userId": "u1"}).event == ""  # the name is optional


def test_alias():
    event = one("alias", {"userId": "u1", "previousId": "a1"})
    assert event.type == events_pb2.EVENT_TYPE_ALIAS
    assert (event.user_id, event.previous_id, event.anonymous_id) == ("u1", "a1", "")


def test_group():
    event = one("group", {"userId": "u1", "groupId": "acme", "traits": {"employees": 40}})
    assert event.type == events_pb2.EVENT_TYPE_GROUP
    assert event.group_id == "acme"
    assert struct(event.traits) == {"employees": 40}


@pytest.mark.parametrize("call", ["batch", "import"])
def test_batch_and_import(call):
    events = collect(
        call,
        {
            "batch": [
                {"type": "identify", "userId": "u1", "traits": {"a": 1}},
                {"type": "track", "userId": "u1", "event": "E", "properties": {"p": 1}},
                {"type": "page", "anonymousId": "a1", "name": "Home"},
                {"type": "screen", "anonymousId": "a1", "name": "Main"},
                {"type": "alias", "userId": "u1", "previousId": "a1"},
                {"type": "group", "userId": "u1", "groupId": "g1"},
            ]
        },
    )
    assert [e.type for e in events] == [
        events_pb2.EVENT_TYPE_IDENTIFY,
        events_pb2.EVENT_TYPE_TRACK,
        events_pb2.EVENT_TYPE_PAGE,
        events_pb2.EVENT_TYPE_SCREEN,
        events_pb2.EVENT_TYPE_ALIAS,
        events_pb2.EVENT_TYPE_GROUP,
    ]
    assert [e.event for e in events] == ["", "E", "Home", "Main", "", ""]
    assert events[5].group_id == "g1"
    assert events[4].previous_id == "a1"
    assert all(e.workspace_id == "shop" and e.source_key_id == "key_1" for e in events)
    assert len({e.message_id for e in events}) == 6


def test_single_call_type_comes_from_the_url_not_the_body():
    event = one("track", {"type": "identify", "userId": "u1", "event": "E"})
    assert event.type == events_pb2.EVENT_TYPE_TRACK


def test_extra_top_level_fields_are_ignored():
    event = one("track", {"userId": "u1", "event": "E", "rudderId": "r", "channel": "web", "writeKey": "k"})
    assert event.event == "E"


def test_ids_may_be_numbers():
    event = one("track", {"userId": 42, "anonymousId": 1.5, "event": "E"})
    assert (event.user_id, event.anonymous_id) == ("42", "1.5")


# --------------------------------------------------------------------------------------------
# Batch-level context, message ids


def test_batch_context_is_merged_and_message_context_wins():
    events = collect(
        "batch",
        {
            "context": {"library": {"name": "analytics-python"}, "ip": "1.1.1.1"},
            "batch": [
                {"type": "track", "userId": "u1", "event": "A"},
                {"type": "track", "userId": "u1", "event": "B", "context": {"ip": "2.2.2.2", "locale": "fr"}},
            ],
        },
    )
    assert struct(events[0].context) == {"library": {"name": "analytics-python"}, "ip": "1.1.1.1"}
    assert struct(events[1].context) == {"library": {"name": "analytics-python"}, "ip": "2.2.2.2", "locale": "fr"}


def test_batch_context_traits_serve_rudderstack_identify():
    (event,) = collect("batch", {"context": {"traits": {"email": "x"}}, "batch": [{"type": "identify", "userId": "u"}]})
    assert struct(event.traits) == {"email": "x"}


def test_message_id_is_generated_when_missing_and_kept_when_given():
    events = collect(
        "batch",
        {
            "batch": [
                {"type": "track", "userId": "u1", "event": "A"},
                {"type": "track", "userId": "u1", "event": "B", "messageId": ""},
                {"type": "track", "userId": "u1", "event": "C", "messageId": "given-1"},
            ]
        },
    )
    generated = [events[0].message_id, events[1].message_id]
    for message_id in generated:
        assert uuid.UUID(message_id).version == 7
    assert generated[0] != generated[1]
    assert events[2].message_id == "given-1"
    # Generated per call: the same body twice gets new ids.
    assert (
        one("track", {"userId": "u1", "event": "A"}).message_id
        != one("track", {"userId": "u1", "event": "A"}).message_id
    )


# --------------------------------------------------------------------------------------------
# Timestamps


def test_timestamp_defaults_to_received_at():
    event = one("track", {"userId": "u1", "event": "E"})
    assert when(event.timestamp) == RECEIVED
    assert not event.HasField("original_timestamp")
    assert not event.HasField("sent_at")


def test_timestamp_without_sent_at_is_kept_as_is():
    event = one("track", {"userId": "u1", "event": "E", "timestamp": "2024-05-01T11:00:00Z"})
    assert when(event.timestamp) == datetime(2024, 5, 1, 11, tzinfo=UTC)
    assert when(event.original_timestamp) == datetime(2024, 5, 1, 11, tzinfo=UTC)


def test_clock_skew_is_corrected_with_sent_at():
    # The device clock runs 1 hour fast; the event happened 30 s before sending.
    event = one(
        "track",
        {"userId": "u1", "event": "E", "timestamp": "2024-05-01T13:00:00Z", "sentAt": "2024-05-01T13:00:30Z"},
    )
    assert when(event.timestamp) == RECEIVED - timedelta(seconds=30)
    assert when(event.original_timestamp) == datetime(2024, 5, 1, 13, tzinfo=UTC)
    assert when(event.sent_at) == datetime(2024, 5, 1, 13, 0, 30, tzinfo=UTC)
    assert when(event.received_at) == RECEIVED


def test_clock_skew_uses_original_timestamp_and_batch_sent_at():
    events = collect(
        "batch",
        {
            "sentAt": "2024-05-01T08:00:10Z",
            "batch": [
                {"type": "track", "userId": "u1", "event": "A", "originalTimestamp": "2024-05-01T08:00:00Z"},
                # A message's own sentAt wins over the batch's.
                {
                    "type": "track",
                    "userId": "u1",
                    "event": "B",
                    "timestamp": "2024-05-01T08:00:00Z",
                    "sentAt": "2024-05-01T08:00:01Z",
                },
            ],
        },
    )
    assert when(events[0].timestamp) == RECEIVED - timedelta(seconds=10)
    assert when(events[0].sent_at) == datetime(2024, 5, 1, 8, 0, 10, tzinfo=UTC)
    assert when(events[1].timestamp) == RECEIVED - timedelta(seconds=1)


def test_no_skew_correction_beyond_max_skew():
    original = datetime(2022, 1, 1, tzinfo=UTC)
    sent = original + MAX_SKEW + timedelta(seconds=1)
    event = one("track", {"userId": "u1", "event": "E", "timestamp": original.isoformat(), "sentAt": sent.isoformat()})
    assert when(event.timestamp) == original
    # Exactly at the limit the correction still applies.
    sent = original + MAX_SKEW
    event = one("track", {"userId": "u1", "event": "E", "timestamp": original.isoformat(), "sentAt": sent.isoformat()})
    assert when(event.timestamp) == RECEIVED - MAX_SKEW


def test_event_times_far_from_their_receipt_are_refused_naming_the_field():
    assert when(one("track", {"userId": "u", "event": "E", "timestamp": (RECEIVED + timedelta(hours=23)).isoformat()})
                .timestamp) == RECEIVED + timedelta(hours=23)  # fmt: skip
    future = (RECEIVED + timedelta(days=1, seconds=1)).isoformat()
    assert invalid("track", {"userId": "u", "event": "E", "timestamp": future}).field == "timestamp"
    error = invalid("batch", {"batch": [{"type": "track", "userId": "u", "event": "E", "originalTimestamp": future}]})
    assert error.field == "batch[0].originalTimestamp"
    assert invalid("track", {"userId": "u", "event": "E", "timestamp": "2001-01-01T00:00:00Z"}).field == "timestamp"
    # A device clock a week ahead, corrected with sentAt, is fine.
    ahead = {
        "timestamp": (RECEIVED + timedelta(days=7)).isoformat(),
        "sentAt": (RECEIVED + timedelta(days=7, seconds=5)).isoformat(),
    }
    assert when(one("track", {"userId": "u", "event": "E", **ahead}).timestamp) == RECEIVED - timedelta(seconds=5)


def test_timezone_less_timestamps_are_utc():
    event = one("track", {"userId": "u1", "event": "E", "timestamp": "2024-05-01T10:00:00"})
    assert when(event.timestamp) == datetime(2024, 5, 1, 10, tzinfo=UTC)


def test_timestamps_with_offsets_and_fractions():
    event = one("track", {"userId": "u1", "event": "E", "timestamp": "2024-05-01T12:00:00.250+02:00"})
    assert when(event.timestamp) == datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC)
    # Go SDKs send RFC 3339 with nanoseconds.
    event = one("track", {"userId": "u1", "event": "E", "timestamp": "2024-05-01T10:00:00.123456789Z"})
    assert when(event.timestamp) == datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)


def test_parse_time():
    assert parse_time(None, "f") is None
    assert parse_time("", "f") is None
    assert parse_time("2024-05-01T10:00:00z", "f") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    moment = parse_time(" 2024-05-01T10:00:00-05:00 ", "f")
    assert moment == datetime(2024, 5, 1, 15, tzinfo=UTC)
    assert moment.tzinfo == UTC
    assert parse_time("2024-05-01T10:00:00", "f").utcoffset() == timedelta(0)
    assert parse_time("2024-05-01T10:00:00+01:00", "f") == datetime(2024, 5, 1, 9, tzinfo=UTC)
    assert parse_time("2024-05-01T10:00:00+01:00", "f").tzinfo == UTC
    for bad in ("yesterday", "2024-13-01T00:00:00Z", 1714557600, ["2024-05-01"], "9999-12-31T23:59:59Z",
                "0001-01-01T00:00:00+01:00", "1969-12-31T23:59:59Z"):  # fmt: skip
        with pytest.raises(InvalidArgument) as caught:
            parse_time(bad, "batch[2].timestamp")
        assert caught.value.field == "batch[2].timestamp"


# --------------------------------------------------------------------------------------------
# Validation errors name their field


@pytest.mark.parametrize(
    ("call", "body", "field"),
    [
        ("track", [], "body"),
        ("track", "x", "body"),
        ("track", {"event": "E"}, "userId"),
        ("track", {"userId": "u1"}, "event"),
        ("track", {"userId": "u1", "event": ""}, "event"),
        ("track", {"userId": "u1", "event": {"x": 1}}, "event"),
        ("track", {"userId": "u1", "event": "x" * (MAX_EVENT_NAME + 1)}, "event"),
        ("track", {"userId": True, "event": "E"}, "userId"),
        ("track", {"userId": ["u"], "event": "E"}, "userId"),
        ("track", {"userId": "u" * (MAX_ID_LENGTH + 1), "event": "E"}, "userId"),
        ("track", {"anonymousId": {"a": 1}, "event": "E"}, "anonymousId"),
        ("track", {"userId": "u1", "event": "E", "messageId": "m" * (MAX_ID_LENGTH + 1)}, "messageId"),
        ("track", {"userId": "u1", "event": "E", "properties": [1]}, "properties"),
        ("track", {"userId": "u1", "event": "E", "context": "web"}, "context"),
        ("track", {"userId": "u1", "event": "E", "integrations": True}, "integrations"),
        ("track", {"userId": "u1", "event": "E", "timestamp": "soon"}, "timestamp"),
        ("track", {"userId": "u1", "event": "E", "timestamp": 1714557600}, "timestamp"),
        ("track", {"userId": "u1", "event": "E", "sentAt": "soon"}, "sentAt"),
        ("identify", {"userId": "u1", "traits": "pro"}, "traits"),
        ("page", {"userId": "u1", "name": "x" * (MAX_EVENT_NAME + 1)}, "name"),
        ("page", {"userId": "u1", "name": ["Home"]}, "name"),
        ("alias", {"userId": "u1"}, "previousId"),
        ("alias", {"previousId": "a1"}, "userId"),
        ("alias", {"anonymousId": "a1", "previousId": "a1"}, "userId"),
        ("group", {"userId": "u1"}, "groupId"),
        ("group", {"userId": "u1", "groupId": {"id": 1}}, "groupId"),
        ("batch", {}, "batch"),
        ("batch", {"batch": []}, "batch"),
        ("batch", {"batch": {"type": "track"}}, "batch"),
        ("batch", {"batch": [{"type": "track", "userId": "u", "event": "E"}], "context": []}, "context"),
        ("batch", {"batch": [{"type": "track", "userId": "u", "event": "E"}], "sentAt": "x"}, "sentAt"),
        ("batch", {"batch": [{"type": "track", "userId": "u", "event": "E"}, "x"]}, "batch[1]"),
        (
            "batch",
            {"batch": [{"type": "track", "userId": "u", "event": "E"}, {"type": "track", "userId": "u"}]},
            "batch[1].event",
        ),
        ("batch", {"batch": [{"userId": "u"}]}, "batch[0].type"),
        ("batch", {"batch": [{"type": "batch", "userId": "u"}]}, "batch[0].type"),
        ("batch", {"batch": [{"type": "Track", "userId": "u"}]}, "batch[0].type"),
        ("batch", {"batch": [{"type": "track", "event": "E"}]}, "batch[0].userId"),
        ("batch", {"batch": [{"type": "track", "userId": "u", "event": "E", "timestamp": "x"}]}, "batch[0].timestamp"),
        ("batch", {"batch": [{"type": "track", "userId": "u", "event": "E", "sentAt": "x"}]}, "batch[0].sentAt"),
        ("batch", {"batch": [{"type": "track", "userId": "u", "event": "E", "context": 1}]}, "batch[0].context"),
        ("batch", {"batch": [{"type": "alias", "userId": "u"}]}, "batch[0].previousId"),
        ("batch", {"batch": [{"type": "group", "userId": "u"}]}, "batch[0].groupId"),
        (
            "import",
            {"batch": [{"type": "track", "userId": "u", "event": "E"}] * 2 + [{"type": "page"}]},
            "batch[2].userId",
        ),
    ],
)
def test_validation_errors_name_their_field(call, body, field):
    assert invalid(call, body).field == field


def test_a_bad_original_timestamp_is_named_as_such():
    # BUG: the value may come from originalTimestamp but the error always says "timestamp".
    error = invalid("batch", {"batch": [{"type": "track", "userId": "u", "event": "E", "originalTimestamp": "x"}]})
    assert error.field == "batch[0].originalTimestamp"


def test_the_first_bad_message_rejects_the_whole_batch():
    body = {"batch": [{"type": "track", "userId": "u", "event": "E"}, {"type": "track", "userId": "u"}, {}]}
    assert invalid("batch", body).field == "batch[1].event"


# --------------------------------------------------------------------------------------------
# Size limits


def _size(message: dict) -> int:
    return len(json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode())


def test_message_over_max_message_bytes_is_payload_too_large():
    message = {"userId": "u1", "event": "E", "properties": {"text": "é" * 100}}  # 2 bytes per character
    size = _size(message)
    assert one("track", message, limits=Limits(max_message_bytes=size)).event == "E"
    with pytest.raises(PayloadTooLarge) as caught:
        collect("track", message, limits=Limits(max_message_bytes=size - 1))
    assert str(size) in caught.value.message


def test_batch_message_over_max_message_bytes_names_it():
    big = {"type": "track", "userId": "u1", "event": "E", "properties": {"text": "x" * 200}}
    with pytest.raises(PayloadTooLarge) as caught:
        collect(
            "batch",
            {"batch": [{"type": "track", "userId": "u", "event": "E"}, big]},
            limits=Limits(max_message_bytes=150),
        )
    assert "batch[1]" in caught.value.message


def test_batch_with_too_many_messages_is_payload_too_large():
    message = {"type": "track", "userId": "u", "event": "E"}
    assert len(collect("batch", {"batch": [message] * 3}, limits=Limits(max_batch_messages=3))) == 3
    with pytest.raises(PayloadTooLarge) as caught:
        collect("batch", {"batch": [message] * 4}, limits=Limits(max_batch_messages=3))
    assert "4" in caught.value.message and "3" in caught.value.message
    # The count is checked before any message is validated.
    with pytest.raises(PayloadTooLarge):
        collect("batch", {"batch": [{}] * 4}, limits=Limits(max_batch_messages=3))


def test_default_limits():
    limits = Limits()
    assert (limits.max_message_bytes, limits.max_batch_bytes, limits.max_batch_messages) == (
        32 * 1024,
        500 * 1024,
        2500,
    )


# --------------------------------------------------------------------------------------------
# to_raw_event directly, partition_key


def test_to_raw_event_with_type_from_message_and_shared_context():
    event = to_raw_event(
        {"type": "screen", "anonymousId": "a", "name": "S", "context": {"os": "ios"}},
        call_type=None,
        workspace_id="w",
        key_id="k",
        received_at=RECEIVED,
        sent_at=None,
        shared_context={"app": "x", "os": "android"},
        field="events[3]",
        limits=Limits(),
    )
    assert event.type == events_pb2.EVENT_TYPE_SCREEN
    assert struct(event.context) == {"app": "x", "os": "ios"}
    with pytest.raises(InvalidArgument) as caught:
        to_raw_event(
            {"type": "screen"},
            call_type=None,
            workspace_id="w",
            key_id="k",
            received_at=RECEIVED,
            sent_at=None,
            shared_context=None,
            field="events[3]",
            limits=Limits(),
        )
    assert caught.value.field == "events[3].userId"


def test_partition_key_prefers_anonymous_id():
    assert partition_key(events_pb2.RawEvent(workspace_id="shop", user_id="u1", anonymous_id="a1")) == "shop/a1"
    assert partition_key(events_pb2.RawEvent(workspace_id="shop", user_id="u1")) == "shop/u1"
    assert partition_key(events_pb2.RawEvent(workspace_id="shop2", anonymous_id="a1")) == "shop2/a1"
    # A visitor before and after login lands on the same key.
    before = one("track", {"anonymousId": "a1", "event": "E"})
    after = one("track", {"anonymousId": "a1", "userId": "u1", "event": "E"})
    assert partition_key(before) == partition_key(after)
