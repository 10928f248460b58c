"""Consumers: resolved events (store once, update the profile, announce through the outbox) and
identity's merges and splits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog
from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg

from cdp.events.v1 import events_pb2
from cdp_profile.domain import EVENT_KINDS, ORDER_KINDS, NewEvent, clean_text, normalise_channel, order_problem
from cdp_profile.metrics import EVENTS_ADJUSTED, EVENTS_REJECTED
from cdp_profile.service import Incoming, ProfileService
from cdp_profile.structs import text_of, to_datetime, to_dict
from cdpkit.bus import IDENTITY, RESOLVED, BusNames
from cdpkit.consumer import ConsumerSpec, PermanentError

log = structlog.get_logger(__name__)

EVENT_TYPE_NAMES = {value: name.removeprefix("EVENT_TYPE_").lower() for name, value in events_pb2.EventType.items()}


def resolved_events_consumer(batch_size: int) -> ConsumerSpec:
    return ConsumerSpec(durable="profile-resolved", stream=RESOLVED, batch_size=batch_size)


def identity_consumer(names: BusNames) -> ConsumerSpec:
    # Not partitioned (the IDENTITY stream is not): merges and splits are rare.
    return ConsumerSpec(
        durable="profile-identity", stream=IDENTITY, filter_subject=names.subject(IDENTITY, "*"), batch_size=20
    )


class BadEvent(ValueError):
    """A resolved event the profile cannot store (the rest of its batch goes on)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# Bounds of what one event may carry (the gateway's own limits are tighter; these guard the
# profile against any producer): a time at most MAX_FUTURE after its receipt (later: clamped to
# the receipt, a device clock ahead) and at most MAX_AGE before it (older: refused); sizes.
MAX_FUTURE = timedelta(minutes=5)
MAX_AGE = timedelta(days=20 * 366)
RECEIVED_RANGE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
MAX_ID = 256
MAX_STRUCT_BYTES = 64 * 1024
MAX_TRAITS = 200
MAX_TRAIT_KEY = 128
MAX_TRAIT_BYTES = 4096


def _time(message: events_pb2.RawEvent, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    try:
        return to_datetime(getattr(message, field))
    except (OverflowError, ValueError):
        raise BadEvent("bad_time", f"{field} is not a valid time") from None


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {k.replace("\x00", ""): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _traits(struct: struct_pb2.Struct, adjusted: list[str]) -> dict[str, Any]:
    """Identify traits, each bounded in size; NUL characters (which Postgres cannot store) removed."""
    traits = {}
    for key, value in to_dict(struct).items():
        if len(traits) == MAX_TRAITS or not key or len(key) > MAX_TRAIT_KEY:
            adjusted.append("trait_dropped")
            continue
        if len(orjson.dumps(value)) > MAX_TRAIT_BYTES:
            adjusted.append("trait_dropped")
            continue
        traits[key] = value
    cleaned = _without_nul(traits)
    if cleaned != traits:
        adjusted.append("nul_removed")
    return cleaned


def describe(event_type: str, properties: struct_pb2.Struct, context: struct_pb2.Struct) -> tuple[str, str, str, str]:
    """(channel, store id, staff id, source) of an event, where known."""
    store = text_of(properties, "store_id", "storeId") or text_of(context, "store_id", "storeId")
    staff = text_of(properties, "staff_id", "staffId") or text_of(context, "staff_id", "staffId")
    channel = normalise_channel(text_of(properties, "channel") or text_of(context, "channel"))
    if not channel:
        if store:
            channel = "store"
        elif event_type == "screen" or "app" in context.fields:
            channel = "app"
        elif event_type == "page" or "page" in context.fields:
            channel = "web"
    source = text_of(context, "source") or channel
    return channel, clean_text(store), clean_text(staff), clean_text(source, 64)


def kept_context(context: struct_pb2.Struct) -> struct_pb2.Struct:
    """The part of ``context`` the profile keeps (see docs/profile.md, Events in: context).

    Personal data identity needed and the profile does not (ip, identify traits, device ids and
    advertising ids, precise location) is not kept: PIPL counts device identifiers and
    whereabouts as personal (precise location as sensitive) information, and nothing here reads
    them. Kept: where the event came from (channel, source, store, staff, app, library, os,
    device type/model, locale, time zone, screen, campaign, page without its query string).
    """
    kept = struct_pb2.Struct()
    fields = context.fields
    for key in KEPT_CONTEXT:
        if key in fields:
            kept.fields[key].CopyFrom(fields[key])
    for key, allowed in PARTIAL_CONTEXT.items():
        if key in fields and fields[key].HasField("struct_value"):
            inner = fields[key].struct_value.fields
            part = kept.fields[key].struct_value
            for name in allowed:
                if name in inner:
                    value = inner[name]
                    if name in ("url", "referrer") and value.HasField("string_value"):
                        part.fields[name].string_value = value.string_value.split("?", 1)[0].split("#", 1)[0]
                    else:
                        part.fields[name].CopyFrom(value)
    return kept


KEPT_CONTEXT = (
    "app", "campaign", "channel", "library", "locale", "os", "screen", "source", "timezone", "userAgent",
    "store_id", "storeId", "staff_id", "staffId",
)  # fmt: skip
PARTIAL_CONTEXT = {
    "device": ("type", "manufacturer", "model", "name"),
    "page": ("path", "title", "url", "referrer"),
    "location": ("country", "region", "city"),
    "network": ("carrier", "cellular", "wifi", "bluetooth"),
}


def to_incoming(resolved: events_pb2.ResolvedEvent) -> Incoming:
    """The profile's view of a resolved event, validated and bounded: raises :class:`BadEvent`
    for what cannot be stored; clamps what can be (``Incoming.adjusted`` says what)."""
    event = resolved.event
    if not event.workspace_id:
        raise BadEvent("no_workspace")
    if not resolved.person_id:
        raise BadEvent("no_person_id")
    try:
        person_id = str(uuid.UUID(resolved.person_id))
    except ValueError:
        raise BadEvent("bad_person_id") from None
    if not event.message_id or len(event.message_id) > MAX_ID or "\x00" in event.message_id:
        raise BadEvent("bad_message_id")
    adjusted: list[str] = []
    received = _time(event, "received_at") or datetime.now(UTC)
    if not RECEIVED_RANGE[0] <= received < RECEIVED_RANGE[1]:
        raise BadEvent("bad_time", "received_at is out of range")
    event_time = _time(event, "timestamp") or received
    if event_time > received + MAX_FUTURE:
        event_time = received
        adjusted.append("future_time")
    elif event_time < received - MAX_AGE:
        raise BadEvent("too_old", f"timestamp {event_time.isoformat()} is more than 20 years before its receipt")
    if event.properties.ByteSize() > MAX_STRUCT_BYTES or event.traits.ByteSize() > MAX_STRUCT_BYTES:
        raise BadEvent("too_large", f"properties and traits are limited to {MAX_STRUCT_BYTES} bytes each")
    type_ = EVENT_TYPE_NAMES.get(event.type, "unspecified")
    context = kept_context(event.context)
    channel, store_id, staff_id, source = describe(type_, event.properties, event.context)
    traits = None
    if type_ == "identify" and event.HasField("traits"):
        traits = {"set": _traits(event.traits, adjusted)}
    name = clean_text(event.event)
    if name != event.event:
        adjusted.append("nul_removed")
    item = Incoming(
        workspace_id=clean_text(event.workspace_id, MAX_ID),
        message_id=event.message_id,
        person_id=person_id,
        type=type_,
        event=name,
        properties=event.properties,
        context=context,
        event_time=event_time,
        received_at=received,
        traits=traits,
        identifiers=[(i.type, i.value) for i in resolved.identifiers],
        channel=channel,
        store_id=store_id,
        staff_id=staff_id,
        source=source,
        adjusted=adjusted,
    )
    if EVENT_KINDS.get(item.event) in ORDER_KINDS and type_ == "track":
        item.property_values = to_dict(event.properties)
        problem = order_problem(
            NewEvent(item.message_id, person_id, type_, item.event, event_time, item.property_values)
        )
        if problem:
            raise BadEvent("order_values_out_of_range", problem)
    return item


def admit(resolved_events: Sequence[events_pb2.ResolvedEvent]) -> list[Incoming]:
    """The events of a batch the profile can store; the others are logged and counted, never
    failing the batch (one chunk holds up to 100 events of many shoppers)."""
    items = []
    for resolved in resolved_events:
        try:
            item = to_incoming(resolved)
        except BadEvent as exc:
            EVENTS_REJECTED.labels(exc.reason).inc()
            log.warning(
                "resolved event rejected",
                workspace=resolved.event.workspace_id[:MAX_ID],
                message_id=resolved.event.message_id[:MAX_ID],
                reason=exc.reason,
                detail=exc.detail,
            )
            continue
        for reason in item.adjusted:
            EVENTS_ADJUSTED.labels(reason).inc()
        if item.adjusted:
            log.info(
                "resolved event adjusted",
                workspace=item.workspace_id,
                message_id=item.message_id,
                reasons=sorted(set(item.adjusted)),
            )
        items.append(item)
    return items


class ResolvedEventsHandler:
    def __init__(self, service: ProfileService) -> None:
        self._service = service

    async def __call__(self, messages: Sequence[Msg]) -> None:
        resolved: list[events_pb2.ResolvedEvent] = []
        for message in messages:
            try:
                batch = events_pb2.ResolvedEventBatch.FromString(message.data)
            except DecodeError as exc:
                raise PermanentError(f"not a ResolvedEventBatch: {exc}") from None
            resolved.extend(batch.events)
        await self._service.record_events(admit(resolved))


class IdentityHandler:
    """PersonsMerged and PersonSplit; the other identity announcements are not profile's concern."""

    def __init__(self, service: ProfileService) -> None:
        self._service = service

    async def __call__(self, messages: Sequence[Msg]) -> None:
        for message in messages:
            kind = message.subject.rsplit(".", 1)[-1]
            try:
                if kind == "persons_merged":
                    await self._service.apply_merge(events_pb2.PersonsMerged.FromString(message.data))
                elif kind == "person_split":
                    await self._service.apply_split(events_pb2.PersonSplit.FromString(message.data))
            except DecodeError as exc:
                raise PermanentError(f"not a {kind} payload: {exc}") from None
