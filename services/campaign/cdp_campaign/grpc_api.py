"""JourneyService over gRPC: proto <-> domain, nothing else."""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2, json_format, struct_pb2

from cdp.campaign.v1 import campaign_pb2, campaign_pb2_grpc
from cdp_campaign.domain import Journey
from cdp_campaign.service import JourneyService
from cdpkit.errors import InvalidArgument
from cdpkit.names import RESOURCE_ID, parse, workspace_of

_NAME = "workspaces/{workspace}/journeys/{journey}"
_STATES = {s: campaign_pb2.Journey.State.Value(f"STATE_{s.upper()}") for s in ("draft", "active", "paused", "archived")}


def _ids(name: str, field: str = "name") -> dict[str, str]:
    return parse(name, _NAME, field=field, id_patterns={"journey": RESOURCE_ID})


def to_proto(journey: Journey) -> campaign_pb2.Journey:
    definition = struct_pb2.Struct()
    definition.update(journey.definition)
    message = campaign_pb2.Journey(
        name=f"workspaces/{journey.workspace_id}/journeys/{journey.journey_id}",
        display_name=journey.display_name,
        description=journey.description,
        state=_STATES[journey.state],
        definition=definition,
        etag=journey.etag,
    )
    message.create_time.FromDatetime(journey.created_at)
    message.update_time.FromDatetime(journey.updated_at)
    return message


def _definition(message: campaign_pb2.Journey) -> dict:
    return json_format.MessageToDict(message.definition) if message.HasField("definition") else {}


class JourneyServicer(campaign_pb2_grpc.JourneyServiceServicer):
    def __init__(self, service: JourneyService) -> None:
        self._service = service

    async def CreateJourney(
        self, request: campaign_pb2.CreateJourneyRequest, context: grpc.aio.ServicerContext
    ) -> campaign_pb2.Journey:
        workspace_id = workspace_of(request.parent)
        if not request.HasField("journey"):
            raise InvalidArgument("journey", "is required")
        j = request.journey
        created = await self._service.create(
            Journey(workspace_id, request.journey_id, j.display_name, j.description, _definition(j))
        )
        return to_proto(created)

    async def GetJourney(
        self, request: campaign_pb2.GetJourneyRequest, context: grpc.aio.ServicerContext
    ) -> campaign_pb2.Journey:
        ids = _ids(request.name)
        return to_proto(await self._service.get(ids["workspace"], ids["journey"]))

    async def ListJourneys(
        self, request: campaign_pb2.ListJourneysRequest, context: grpc.aio.ServicerContext
    ) -> campaign_pb2.ListJourneysResponse:
        journeys, token = await self._service.list(workspace_of(request.parent), request.page_size, request.page_token)
        return campaign_pb2.ListJourneysResponse(journeys=[to_proto(j) for j in journeys], next_page_token=token)

    async def UpdateJourney(
        self, request: campaign_pb2.UpdateJourneyRequest, context: grpc.aio.ServicerContext
    ) -> campaign_pb2.Journey:
        j = request.journey
        ids = _ids(j.name, "journey.name")
        changes = Journey(ids["workspace"], ids["journey"], j.display_name, j.description, _definition(j), etag=j.etag)
        return to_proto(await self._service.update(changes, request.update_mask.paths))

    async def DeleteJourney(
        self, request: campaign_pb2.DeleteJourneyRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        ids = _ids(request.name)
        await self._service.delete(ids["workspace"], ids["journey"], request.etag)
        return empty_pb2.Empty()
