"""The Segment tracking API, pure Python: validate calls and turn them into RawEvents.

Accepted shapes: identify, track, page, screen, alias, group, and batch/import (a list of any
of those under ``batch``). RudderStack's variants are accepted too: identify traits under
``context.traits``, extra top-level fields (ignored), ``rudderId``. Everything is validated
before anything is published: one bad message rejects the whole request, naming the field
(``batch[3].event``), and publishes nothing.

Timestamps: ``timestamp`` = when it happened, corrected for the client's clock skew with
``sentAt`` as Segment does: ``receivedAt - (sentAt - originalTimestamp)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from google.protobuf import struct_pb2, timestamp_pb2

from cdp.events.v1 import events_pb2
from cdpkit.errors import InvalidArgument, PayloadTooLarge
from cdpkit.ids import new_id

CALL_TYPES = {
    "identify": events_pb2.EVENT_TYPE_IDENTIFY,
    "track": events_pb2.EVENT_TYPE_TRACK,
    "page": events_pb2.EVENT_TYPE_PAGE,
    "screen": events_pb2.EVENT_TYPE_SCREEN,
    "alias": events_pb2.EVENT_TYPE_ALIAS,
    "group": events_pb2.EVENT_TYPE_GROUP,
}
MAX_ID_LENGTH = 256
MAX_EVENT_NAME = 200
# Skew correction applies only when the device sent the event within this long after it
# happened (sentAt - timestamp); beyond it the two client times are not trusted together.
MAX_SKEW = timedelta(days=365)
# An event's time (after skew correction) is at most MAX_FUTURE after its receipt (a device clock
# set a day ahead at most) and at most MAX_AGE before it (imports of order history); beyond, the
# request is refused naming the field. Any time at all lies in TIME_RANGE.
MAX_FUTURE = timedelta(days=1)
MAX_AGE = timedelta(days=20 * 366)
TIME_RANGE = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    max_batch_messages: int = 2500


def parse_time(value: Any, field: str) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InvalidArgument(field, "must be an ISO 8601 date-time string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(field, "must be an ISO 8601 date-time string") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00
        raise InvalidArgument(field, "is out of range") from None
    if not TIME_RANGE[0] <= moment < TIME_RANGE[1]:
        raise InvalidArgument(field, f"must be between {TIME_RANGE[0].year} and {TIME_RANGE[1].year}")
    return moment


def _string(message: dict, key: str, field: str, *, required: bool = False, limit: int = MAX_ID_LENGTH) -> str:
    value = message.get(key)
    if value is None or value == "":
        if required:
            raise InvalidArgument(field, "is required")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidArgument(field, "must be a string")
    text = str(value) if not isinstance(value, float) else repr(value)
    if len(text) > limit:
        raise InvalidArgument(field, f"at most {limit} characters")
    return text


def _object(message: dict, key: str, field: str) -> dict | None:
    value = message.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidArgument(field, "must be a JSON object")
    return value


def _struct(value: dict) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(value)
    return struct


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _set_time(stamp: timestamp_pb2.Timestamp, moment: datetime) -> None:
    """``stamp.FromDatetime(moment)`` for aware datetimes, without its per-call calendar work
    (it was a sixth of the gateway's CPU at full ingest rate)."""
    delta = moment - _EPOCH
    stamp.seconds = delta.days * 86_400 + delta.seconds
    stamp.nanos = delta.microseconds * 1000


def to_raw_event(
    message: Any,
    *,
    call_type: str | None,
    workspace_id: str,
    key_id: str,
    received_at: datetime,
    sent_at: datetime | None,
    shared_context: dict | None,
    field: str,
    limits: Limits,
) -> events_pb2.RawEvent:
    """One validated RawEvent from one call; ``call_type`` None means "from the type field"."""
    if not isinstance(message, dict):
        raise InvalidArgument(field or "body", "must be a JSON object")
    prefix = f"{field}." if field else ""
    size = len(orjson.dumps(message))  # compact UTF-8 JSON, as sent by an SDK
    if size > limits.max_message_bytes:
        raise PayloadTooLarge(f"{field or 'message'} is {size} bytes; the limit is {limits.max_message_bytes}")
    kind = call_type or _string(message, "type", f"{prefix}type", required=True)
    if kind not in CALL_TYPES:
        raise InvalidArgument(f"{prefix}type", f"must be one of {', '.join(CALL_TYPES)}")

    user_id = _string(message, "userId", f"{prefix}userId")
    anonymous_id = _string(message, "anonymousId", f"{prefix}anonymousId")
    previous_id = _string(message, "previousId", f"{prefix}previousId")
    if kind == "alias":
        if not previous_id:
            raise InvalidArgument(f"{prefix}previousId", "is required for alias")
        if not user_id:
            raise InvalidArgument(f"{prefix}userId", "is required for alias")
    elif not user_id and not anonymous_id:
        raise InvalidArgument(f"{prefix}userId", "userId or anonymousId is required")

    event_name = ""
    if kind == "track":
        event_name = _string(message, "event", f"{prefix}event", required=True, limit=MAX_EVENT_NAME)
    elif kind in ("page", "screen"):
        event_name = _string(message, "name", f"{prefix}name", limit=MAX_EVENT_NAME)
    group_id = _string(message, "groupId", f"{prefix}groupId", required=kind == "group")

    context = {**(shared_context or {}), **(_object(message, "context", f"{prefix}context") or {})}
    traits = _object(message, "traits", f"{prefix}traits")
    if traits is None and kind == "identify" and isinstance(context.get("traits"), dict):
        traits = context["traits"]  # RudderStack puts identify traits under context.traits
    properties = _object(message, "properties", f"{prefix}properties")
    integrations = _object(message, "integrations", f"{prefix}integrations")

    time_key = "timestamp" if message.get("timestamp") else "originalTimestamp"
    original = parse_time(message.get(time_key), f"{prefix}{time_key}")
    own_sent_at = parse_time(message.get("sentAt"), f"{prefix}sentAt") or sent_at
    timestamp = original or received_at
    if original and own_sent_at and abs(own_sent_at - original) <= MAX_SKEW:
        timestamp = received_at - (own_sent_at - original)
    if timestamp > received_at + MAX_FUTURE:
        raise InvalidArgument(f"{prefix}{time_key}", "is more than a day after the time the event was received")
    if timestamp < received_at - MAX_AGE:
        raise InvalidArgument(f"{prefix}{time_key}", "is more than 20 years before the time the event was received")

    event = events_pb2.RawEvent(
        message_id=_string(message, "messageId", f"{prefix}messageId") or new_id(),
        workspace_id=workspace_id,
        type=CALL_TYPES[kind],
        event=event_name,
        user_id=user_id,
        anonymous_id=anonymous_id,
        previous_id=previous_id,
        group_id=group_id,
        source_key_id=key_id,
    )
    # Filled in place (a Struct built apart and copied in costs a second walk).
    if traits is not None:
        event.traits.SetInParent()
        event.traits.update(traits)
    if properties is not None:
        event.properties.SetInParent()
        event.properties.update(properties)
    if context:
        event.context.update(context)
    if integrations is not None:
        event.integrations.SetInParent()
        event.integrations.update(integrations)
    _set_time(event.timestamp, timestamp)
    _set_time(event.received_at, received_at)
    if original:
        _set_time(event.original_timestamp, original)
    if own_sent_at:
        _set_time(event.sent_at, own_sent_at)
    return event


def events_from_body(
    body: Any, *, call_type: str, workspace_id: str, key_id: str, received_at: datetime, limits: Limits
) -> list[events_pb2.RawEvent]:
    """All events of one request to ``/v1/{call_type}`` (``batch`` and ``import`` hold a list)."""
    if not isinstance(body, dict):
        raise InvalidArgument("body", "must be a JSON object")
    sent_at = parse_time(body.get("sentAt"), "sentAt")
    common = {"workspace_id": workspace_id, "key_id": key_id, "received_at": received_at, "limits": limits}
    if call_type in ("batch", "import"):
        messages = body.get("batch")
        if not isinstance(messages, list) or not messages:
            raise InvalidArgument("batch", "must be a non-empty list of messages")
        if len(messages) > limits.max_batch_messages:
            raise PayloadTooLarge(f"batch holds {len(messages)} messages; the limit is {limits.max_batch_messages}")
        shared = _object(body, "context", "context")
        return [
            to_raw_event(m, call_type=None, sent_at=sent_at, shared_context=shared, field=f"batch[{i}]", **common)
            for i, m in enumerate(messages)
        ]
    return [to_raw_event(body, call_type=call_type, sent_at=sent_at, shared_context=None, field="", **common)]


def partition_key(event: events_pb2.RawEvent) -> str:
    """Events of one visitor land in one partition: the anonymous id is the most stable key
    before and after login; a user id otherwise."""
    return f"{event.workspace_id}/{event.anonymous_id or event.user_id}"
