"""IdentityService over gRPC: proto <-> domain, nothing else."""

from __future__ import annotations

import grpc

from cdp.events.v1 import events_pb2
from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_identity.repository import PersonRecord
from cdp_identity.service import IdentityService
from cdpkit.errors import InvalidArgument
from cdpkit.names import UUID, parse, workspace_of

MAX_SETS = 500


def _person(workspace_id: str, record: PersonRecord) -> identity_pb2.Person:
    person = identity_pb2.Person(
        name=f"workspaces/{workspace_id}/persons/{record.person_id}",
        person_id=record.person_id,
        identifiers=[events_pb2.Identifier(type=i.type, value=i.value) for i in record.identifiers],
    )
    person.create_time.FromDatetime(record.created_at)
    person.update_time.FromDatetime(record.updated_at)
    return person


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, service: IdentityService) -> None:
        self._service = service

    async def ResolveIdentities(
        self, request: identity_pb2.ResolveIdentitiesRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.ResolveIdentitiesResponse:
        workspace_id = workspace_of(request.parent)
        if not request.sets:
            raise InvalidArgument("sets", "must hold at least one identifier set")
        if len(request.sets) > MAX_SETS:
            raise InvalidArgument("sets", f"at most {MAX_SETS} sets per call")
        decisions = await self._service.resolve_sets(
            workspace_id, [[(i.type, i.value) for i in s.identifiers] for s in request.sets]
        )
        return identity_pb2.ResolveIdentitiesResponse(
            resolutions=[identity_pb2.Resolution(person_id=d.person_id, created=d.created) for d in decisions]
        )

    async def LookupPerson(
        self, request: identity_pb2.LookupPersonRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.Person:
        workspace_id = workspace_of(request.parent)
        record = await self._service.lookup(workspace_id, request.identifier_type, request.identifier_value)
        return _person(workspace_id, record)

    async def GetPerson(
        self, request: identity_pb2.GetPersonRequest, context: grpc.aio.ServicerContext
    ) -> identity_pb2.Person:
        ids = parse(request.name, "workspaces/{workspace}/persons/{person}", id_patterns={"person": UUID})
        return _person(ids["workspace"], await self._service.get_person(ids["workspace"], ids["person"]))
