"""Customer 360: one call composing what every service knows about a person, in parallel.

Parts and their owners:

==========================  =================================  ======================================
part                        service                            method
==========================  =================================  ======================================
profile                     cdp.profile.v1.ProfileService      GetProfile
identities                  cdp.identity.v1.IdentityService    GetPerson
segment memberships         cdp.segment.v1.SegmentService      ListPersonMemberships (issue #5)
campaign messages           cdp.campaign.v1.JourneyService     ListPersonMessages (issue #6)
==========================  =================================  ======================================

All parts are requested at once with the caller's deadline. A part that fails (service down,
deadline exceeded, any error) is reported in ``parts`` with its state, code and message, and the
others are still returned; ``complete`` is true only when all parts are OK. A part whose method
is not in the service's descriptor is reported STATE_NOT_IMPLEMENTED without a call: the segment
and campaign services do not offer memberships and sent messages yet. When they do (a method of
that name, taking the person as ``parent``/``person``/``name``, answering a list), the gateway
calls it and copies the fields that match :class:`SegmentMembership` / :class:`CampaignMessage`
by JSON name; no other change is needed here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from cdp.gateway.v1 import customer360_pb2
from cdp.identity.v1 import identity_pb2
from cdp.profile.v1 import profile_pb2
from cdp_gateway.dispatch import CallFailed
from cdp_gateway.keys import Principal
from cdpkit import names
from cdpkit.errors import InvalidArgument, NotFound
from cdpkit.server import REQUEST_ID_HEADER, WORKSPACE_HEADER

Part = customer360_pb2.PartStatus.Part
State = customer360_pb2.PartStatus.State

IDENTITY = "cdp.identity.v1.IdentityService"
PROFILE = "cdp.profile.v1.ProfileService"
SEGMENT = "cdp.segment.v1.SegmentService"
CAMPAIGN = "cdp.campaign.v1.JourneyService"
MEMBERSHIPS_METHOD = "ListPersonMemberships"
MESSAGES_METHOD = "ListPersonMessages"
DEFAULT_MESSAGE_LIMIT = 20
MAX_MESSAGE_LIMIT = 100

_STATE_BY_CODE = {
    grpc.StatusCode.OK: State.STATE_OK,
    grpc.StatusCode.NOT_FOUND: State.STATE_NOT_FOUND,
    grpc.StatusCode.UNIMPLEMENTED: State.STATE_NOT_IMPLEMENTED,
}


@dataclass
class _Outcome:
    part: int
    service: str
    code: grpc.StatusCode
    message: str = ""
    response: Any = None

    def status(self) -> customer360_pb2.PartStatus:
        return customer360_pb2.PartStatus(
            part=self.part,
            state=_STATE_BY_CODE.get(self.code, State.STATE_UNAVAILABLE),
            service=self.service,
            code=self.code.name,
            message=self.message,
        )


def _parse_name(name: str) -> tuple[str, str]:
    parts = names.parse(name, "workspaces/{workspace}/persons/{person}/customer360", id_patterns={"person": names.UUID})
    return parts["workspace"], parts["person"]


def _method(services: Mapping[str, ServiceDescriptor], service: str, method: str) -> MethodDescriptor | None:
    descriptor = services.get(service)
    return descriptor.methods_by_name.get(method) if descriptor is not None else None


def _person_request(method: MethodDescriptor, person_name: str, limit: int) -> Message:
    """A request naming the person, for a list method whose exact shape is the owner's choice."""
    request = message_factory.GetMessageClass(method.input_type)()
    fields = request.DESCRIPTOR.fields_by_name
    for field in ("parent", "person", "name"):
        if field in fields:
            setattr(request, field, person_name)
            break
    if "page_size" in fields:
        request.page_size = limit
    return request


def _copy_list(response: Message, target: type[Message]) -> list[Message]:
    """The items of the first repeated message field, as ``target`` (fields matched by name)."""
    for field in response.DESCRIPTOR.fields:
        if field.is_repeated and field.message_type is not None:
            items = getattr(response, field.name)
            return [
                json_format.ParseDict(json_format.MessageToDict(item), target(), ignore_unknown_fields=True)
                for item in items
            ]
    return []


class Customer360Composer:
    def __init__(
        self,
        channels: Mapping[str, grpc.aio.Channel],
        services: Mapping[str, ServiceDescriptor],
        *,
        default_timeout: float = 2.0,
    ) -> None:
        self._channels = channels
        self._services = services
        self._default_timeout = default_timeout

    def handlers(self) -> dict:
        return {"/cdp.gateway.v1.CustomerService/GetCustomer360": self.get}

    async def _call(
        self,
        part: int,
        service: str,
        method: MethodDescriptor | None,
        request: Message | None,
        *,
        metadata: tuple,
        timeout: float,
    ) -> _Outcome:
        if method is None or request is None:
            return _Outcome(part, service, grpc.StatusCode.UNIMPLEMENTED, f"{service} does not offer this data yet")
        channel = self._channels.get(service)
        if channel is None:
            return _Outcome(part, service, grpc.StatusCode.UNAVAILABLE, f"no address configured for {service}")
        response_class = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary(
            f"/{service}/{method.name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        try:
            return _Outcome(
                part, service, grpc.StatusCode.OK, response=await call(request, metadata=metadata, timeout=timeout)
            )
        except grpc.aio.AioRpcError as exc:
            failure = CallFailed.from_rpc_error(exc)
            return _Outcome(part, service, exc.code(), failure.status.message or exc.code().name)

    async def get(
        self,
        request: customer360_pb2.GetCustomer360Request,
        principal: Principal,
        *,
        request_id: str,
        timeout: float | None,
    ) -> customer360_pb2.Customer360:
        workspace, person = _parse_name(request.name)
        limit = request.message_limit or DEFAULT_MESSAGE_LIMIT
        if not 1 <= limit <= MAX_MESSAGE_LIMIT:
            raise InvalidArgument("message_limit", f"must be between 0 and {MAX_MESSAGE_LIMIT}")
        person_name = f"workspaces/{workspace}/persons/{person}"
        metadata = ((WORKSPACE_HEADER, principal.workspace_id), (REQUEST_ID_HEADER, request_id))
        deadline = timeout if timeout is not None else self._default_timeout
        memberships = _method(self._services, SEGMENT, MEMBERSHIPS_METHOD)
        messages = _method(self._services, CAMPAIGN, MESSAGES_METHOD)
        profile, identities, segment_part, campaign_part = await asyncio.gather(
            self._call(
                Part.PART_PROFILE,
                PROFILE,
                _method(self._services, PROFILE, "GetProfile"),
                profile_pb2.GetProfileRequest(name=f"workspaces/{workspace}/profiles/{person}"),
                metadata=metadata,
                timeout=deadline,
            ),
            self._call(
                Part.PART_IDENTITIES,
                IDENTITY,
                _method(self._services, IDENTITY, "GetPerson"),
                identity_pb2.GetPersonRequest(name=person_name),
                metadata=metadata,
                timeout=deadline,
            ),
            self._call(
                Part.PART_SEGMENT_MEMBERSHIPS,
                SEGMENT,
                memberships,
                _person_request(memberships, person_name, MAX_MESSAGE_LIMIT) if memberships else None,
                metadata=metadata,
                timeout=deadline,
            ),
            self._call(
                Part.PART_CAMPAIGN_MESSAGES,
                CAMPAIGN,
                messages,
                _person_request(messages, person_name, limit) if messages else None,
                metadata=metadata,
                timeout=deadline,
            ),
        )
        if profile.code == grpc.StatusCode.NOT_FOUND and identities.code == grpc.StatusCode.NOT_FOUND:
            raise NotFound(f"person {person_name} not found")
        result = customer360_pb2.Customer360(name=request.name, person_id=person)
        if profile.response is not None:
            result.profile.CopyFrom(profile.response)
        if identities.response is not None:
            result.person.CopyFrom(identities.response)
        if segment_part.response is not None:
            result.segment_memberships.extend(_copy_list(segment_part.response, customer360_pb2.SegmentMembership))
        if campaign_part.response is not None:
            result.recent_messages.extend(_copy_list(campaign_part.response, customer360_pb2.CampaignMessage)[:limit])
        result.parts.extend(o.status() for o in (profile, identities, segment_part, campaign_part))
        result.complete = all(p.state == State.STATE_OK for p in result.parts)
        return result
