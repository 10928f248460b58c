"""ProfileService over gRPC: proto <-> domain, nothing else."""

from __future__ import annotations

import grpc
from google.protobuf import struct_pb2

from cdp.events.v1 import events_pb2
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_profile.repository import EventRow
from cdp_profile.service import ProfileService
from cdpkit.names import UUID, parse

_EVENT_TYPES = {name.removeprefix("EVENT_TYPE_").lower(): value for name, value in events_pb2.EventType.items()}
_PROFILE_NAME = "workspaces/{workspace}/profiles/{profile}"


def _event(row: EventRow) -> profile_pb2.ProfileEvent:
    properties = struct_pb2.Struct()
    properties.update(row.properties)
    event = profile_pb2.ProfileEvent(
        message_id=row.message_id, type=_EVENT_TYPES.get(row.type, 0), event=row.event, properties=properties
    )
    event.event_time.FromDatetime(row.event_time)
    event.receive_time.FromDatetime(row.received_at)
    return event


class ProfileServicer(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(self, service: ProfileService) -> None:
        self._service = service

    async def GetProfile(
        self, request: profile_pb2.GetProfileRequest, context: grpc.aio.ServicerContext
    ) -> profile_pb2.Profile:
        ids = parse(request.name, _PROFILE_NAME, id_patterns={"profile": UUID})
        record, recent = await self._service.get_profile(ids["workspace"], ids["profile"])
        state = record.state
        traits = struct_pb2.Struct()
        traits.update(state.traits)
        profile = profile_pb2.Profile(
            name=request.name,
            person_id=state.person_id,
            traits=traits,
            event_count=state.event_count,
            version=state.version,
            recent_events=[_event(r) for r in recent],
        )
        if state.first_seen_at:
            profile.first_seen_time.FromDatetime(state.first_seen_at)
        if state.last_seen_at:
            profile.last_seen_time.FromDatetime(state.last_seen_at)
        profile.update_time.FromDatetime(record.updated_at)
        return profile

    async def ListProfileEvents(
        self, request: profile_pb2.ListProfileEventsRequest, context: grpc.aio.ServicerContext
    ) -> profile_pb2.ListProfileEventsResponse:
        ids = parse(request.parent, _PROFILE_NAME, field="parent", id_patterns={"profile": UUID})
        rows, token = await self._service.list_events(
            ids["workspace"], ids["profile"], request.page_size, request.page_token
        )
        return profile_pb2.ListProfileEventsResponse(events=[_event(r) for r in rows], next_page_token=token)
