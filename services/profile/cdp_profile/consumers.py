"""Consumers: resolved events (store once, update the profile, announce through the outbox) and
identity's merges and splits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg

from cdp.events.v1 import events_pb2
from cdp_profile.domain import normalise_channel
from cdp_profile.service import Incoming, ProfileService
from cdp_profile.structs import text_of, to_datetime, to_dict
from cdpkit.bus import IDENTITY, RESOLVED, BusNames
from cdpkit.consumer import ConsumerSpec, PermanentError

EVENT_TYPE_NAMES = {value: name.removeprefix("EVENT_TYPE_").lower() for name, value in events_pb2.EventType.items()}
# Context keys identity already used and profile must not keep in the clear.
DROPPED_CONTEXT = frozenset({"traits", "ip"})


def resolved_events_consumer(batch_size: int) -> ConsumerSpec:
    return ConsumerSpec(durable="profile-resolved", stream=RESOLVED, batch_size=batch_size)


def identity_consumer(names: BusNames) -> ConsumerSpec:
    # Not partitioned (the IDENTITY stream is not): merges and splits are rare.
    return ConsumerSpec(
        durable="profile-identity", stream=IDENTITY, filter_subject=names.subject(IDENTITY, "*"), batch_size=20
    )


def _time(message: events_pb2.RawEvent, field: str) -> datetime | None:
    return to_datetime(getattr(message, field)) if message.HasField(field) else None


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
    return channel, store[:200], staff[:200], source[:64]


def to_incoming(resolved: events_pb2.ResolvedEvent) -> Incoming:
    event = resolved.event
    received = _time(event, "received_at") or datetime.now(UTC)
    type_ = EVENT_TYPE_NAMES.get(event.type, "unspecified")
    context = event.context
    if any(key in context.fields for key in DROPPED_CONTEXT):
        context = struct_pb2.Struct()
        context.CopyFrom(event.context)
        for key in DROPPED_CONTEXT:
            if key in context.fields:
                del context.fields[key]
    channel, store_id, staff_id, source = describe(type_, event.properties, context)
    traits = None
    if type_ == "identify" and event.HasField("traits"):
        traits = {"set": to_dict(event.traits)}
    return Incoming(
        workspace_id=event.workspace_id,
        message_id=event.message_id,
        person_id=resolved.person_id,
        type=type_,
        event=event.event,
        properties=event.properties,
        context=context,
        event_time=_time(event, "timestamp") or received,
        received_at=received,
        traits=traits,
        identifiers=[(i.type, i.value) for i in resolved.identifiers],
        channel=channel,
        store_id=store_id,
        staff_id=staff_id,
        source=source,
    )


class ResolvedEventsHandler:
    def __init__(self, service: ProfileService) -> None:
        self._service = service

    async def __call__(self, messages: Sequence[Msg]) -> None:
        items: list[Incoming] = []
        for message in messages:
            try:
                batch = events_pb2.ResolvedEventBatch.FromString(message.data)
            except DecodeError as exc:
                raise PermanentError(f"not a ResolvedEventBatch: {exc}") from None
            items.extend(to_incoming(resolved) for resolved in batch.events if resolved.person_id)
        await self._service.record_events(items)


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
