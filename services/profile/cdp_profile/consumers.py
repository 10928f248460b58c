"""Resolved events in: store each once, update the profile, announce the change (outbox)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg

from cdp.events.v1 import events_pb2
from cdp_profile.repository import EventRow
from cdp_profile.service import ProfileService
from cdpkit.bus import RESOLVED
from cdpkit.consumer import ConsumerSpec, PermanentError

EVENT_TYPE_NAMES = {value: name.removeprefix("EVENT_TYPE_").lower() for name, value in events_pb2.EventType.items()}


def resolved_events_consumer(batch_size: int) -> ConsumerSpec:
    return ConsumerSpec(durable="profile-resolved", stream=RESOLVED, batch_size=batch_size)


def _struct(message: events_pb2.RawEvent, field: str) -> dict:
    return json_format.MessageToDict(getattr(message, field)) if message.HasField(field) else {}


def _time(message: events_pb2.RawEvent, field: str) -> datetime | None:
    return getattr(message, field).ToDatetime(UTC) if message.HasField(field) else None


def to_rows(batch: events_pb2.ResolvedEventBatch) -> tuple[list[EventRow], dict[tuple[str, str], dict]]:
    rows: list[EventRow] = []
    traits: dict[tuple[str, str], dict] = {}
    for resolved in batch.events:
        event = resolved.event
        received = _time(event, "received_at") or datetime.now(UTC)
        rows.append(
            EventRow(
                workspace_id=event.workspace_id,
                message_id=event.message_id,
                person_id=resolved.person_id,
                type=EVENT_TYPE_NAMES.get(event.type, "unspecified"),
                event=event.event,
                properties=_struct(event, "properties"),
                context=_struct(event, "context"),
                event_time=_time(event, "timestamp") or received,
                received_at=received,
            )
        )
        if event.type == events_pb2.EVENT_TYPE_IDENTIFY and event.HasField("traits"):
            traits[(event.workspace_id, event.message_id)] = _struct(event, "traits")
    return rows, traits


class ResolvedEventsHandler:
    def __init__(self, service: ProfileService) -> None:
        self._service = service

    async def __call__(self, messages: Sequence[Msg]) -> None:
        rows: list[EventRow] = []
        traits: dict[tuple[str, str], dict] = {}
        for message in messages:
            try:
                batch = events_pb2.ResolvedEventBatch.FromString(message.data)
            except DecodeError as exc:
                raise PermanentError(f"not a ResolvedEventBatch: {exc}") from None
            batch_rows, batch_traits = to_rows(batch)
            rows.extend(batch_rows)
            traits.update(batch_traits)
        await self._service.record_events(rows, traits)
