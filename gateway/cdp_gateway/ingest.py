"""Event collection use cases: validate everything, then publish durably, then answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format

from cdp.events.v1 import events_pb2
from cdp.gateway.v1 import gateway_pb2
from cdp_gateway.collection import Limits, events_from_body, to_raw_event
from cdp_gateway.dedup import SeenMessages
from cdp_gateway.keys import Principal
from cdp_gateway.limits import RateLimiter
from cdp_gateway.publisher import EventPublisher
from cdpkit.errors import InvalidArgument, PayloadTooLarge, PermissionDenied
from cdpkit.names import workspace_of

MAX_INGEST_EVENTS = 500
_TYPE_NAMES = {v: k.removeprefix("EVENT_TYPE_").lower() for k, v in events_pb2.EventType.items() if v}


class Ingestion:
    def __init__(
        self,
        publisher: EventPublisher,
        limits: Limits,
        *,
        limiter: RateLimiter | None = None,
        seen: SeenMessages | None = None,
    ) -> None:
        self._publisher = publisher
        self._limits = limits
        self._limiter = limiter
        self._seen = seen

    async def _accept(self, events: list[events_pb2.RawEvent], principal: Principal) -> None:
        """Rate-limit (one token per event), drop recently seen message ids, publish durably."""
        if self._limiter is not None:
            self._limiter.take(principal, len(events))
        fresh = self._seen.fresh(events) if self._seen is not None else events
        await self._publisher.publish(fresh)
        if self._seen is not None:
            self._seen.remember(fresh)

    async def collect(self, call_type: str, body: Any, principal: Principal) -> list[events_pb2.RawEvent]:
        """A Segment tracking-API call (``/v1/track``, ``/v1/batch`` ...)."""
        events = events_from_body(
            body,
            call_type=call_type,
            workspace_id=principal.workspace_id,
            key_id=principal.key_id,
            received_at=datetime.now(UTC),
            limits=self._limits,
        )
        await self._accept(events, principal)
        return events

    async def ingest(
        self, request: gateway_pb2.IngestEventsRequest, principal: Principal
    ) -> gateway_pb2.IngestEventsResponse:
        """CollectionService.IngestEvents: RawEvents validated by the same rules as the HTTP shape."""
        if workspace_of(request.parent) != principal.workspace_id:
            raise PermissionDenied(f"the key does not grant access to {request.parent}")
        if not request.events:
            raise InvalidArgument("events", "must hold at least one event")
        if len(request.events) > MAX_INGEST_EVENTS:
            raise PayloadTooLarge(f"at most {MAX_INGEST_EVENTS} events per call")
        received_at = datetime.now(UTC)
        events = []
        for index, event in enumerate(request.events):
            if event.type not in _TYPE_NAMES:
                raise InvalidArgument(f"events[{index}].type", "must be set")
            message = json_format.MessageToDict(event)
            call_type = _TYPE_NAMES[event.type]
            if call_type in ("page", "screen"):
                message["name"] = message.pop("event", "")
            events.append(
                to_raw_event(
                    message,
                    call_type=call_type,
                    workspace_id=principal.workspace_id,
                    key_id=principal.key_id,
                    received_at=received_at,
                    sent_at=None,
                    shared_context=None,
                    field=f"events[{index}]",
                    limits=self._limits,
                )
            )
        await self._accept(events, principal)
        return gateway_pb2.IngestEventsResponse(accepted_count=len(events), message_ids=[e.message_id for e in events])
