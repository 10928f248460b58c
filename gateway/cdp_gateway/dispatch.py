"""Calling the services on behalf of an authenticated caller, for HTTP and gRPC alike.

Authorisation is the same for both doors: CollectionService takes a write key; every other
method a secret key with the ``read`` scope (GET routes) or ``write`` scope (the rest); and
the resource named by the request (its first path variable: ``name``, ``parent``,
``segment.name`` ...) must belong to the key's workspace.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.rpc import status_pb2

from cdp.campaign.v1 import campaign_pb2
from cdp.gateway.v1 import gateway_pb2
from cdp.identity.v1 import identity_pb2
from cdp.profile.v1 import profile_pb2
from cdp.segment.v1 import segment_pb2
from cdp_gateway.keys import WRITE, Principal
from cdp_gateway.transcoding import Route
from cdpkit.errors import DomainError, PermissionDenied
from cdpkit.server import REQUEST_ID_HEADER, WORKSPACE_HEADER

COLLECTION_SERVICE = "cdp.gateway.v1.CollectionService"
LocalHandler = Callable[[Message, Principal], Awaitable[Message]]


class CallFailed(Exception):
    """A call ended with a non-OK ``google.rpc.Status`` (from a service or from the gateway)."""

    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.status = status

    @classmethod
    def from_domain(cls, error: DomainError) -> CallFailed:
        return cls(error.to_status())

    @classmethod
    def from_rpc_error(cls, error: grpc.aio.AioRpcError) -> CallFailed:
        for key, value in error.trailing_metadata() or ():
            if key == "grpc-status-details-bin" and isinstance(value, bytes):
                return cls(status_pb2.Status.FromString(value))
        details = error.details() or error.code().name
        if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN):
            details = "the service is unavailable; retry later"  # never leak transport internals
        return cls(status_pb2.Status(code=error.code().value[0], message=details))


def _field_value(message: Message, path: str) -> str:
    value: Any = message
    for part in path.split("."):
        value = getattr(value, part)
    return value


def authorize(route: Route, principal: Principal, request: Message) -> None:
    if route.service.full_name == COLLECTION_SERVICE:
        if principal.kind != WRITE and not principal.may("write"):
            raise PermissionDenied("a write key is required to send events")
    else:
        scope = "read" if route.verb == "GET" else "write"
        if not principal.may(scope):
            raise PermissionDenied(f"a secret key with the {scope!r} scope is required")
    resource = _field_value(request, route.resource_field) if route.resource_field else ""
    own = f"workspaces/{principal.workspace_id}"
    if not (resource == own or resource.startswith(own + "/")):
        raise PermissionDenied(f"the key does not grant access to {resource or 'this resource'}")


class Dispatcher:
    def __init__(
        self,
        routes: Sequence[Route],
        channels: Mapping[str, grpc.aio.Channel],
        local: Mapping[str, LocalHandler],
        *,
        default_timeout: float,
    ) -> None:
        # The first HTTP binding of each method names its resource field.
        self.routes_by_path: dict[str, Route] = {}
        for route in routes:
            self.routes_by_path.setdefault(route.grpc_path, route)
        self._channels = channels
        self._local = local
        self._default_timeout = default_timeout

    async def invoke(
        self, route: Route, request: Message, principal: Principal, *, request_id: str, timeout: float | None
    ) -> Message:
        try:
            authorize(route, principal, request)
            local = self._local.get(route.grpc_path)
            if local is not None:
                return await local(request, principal)
        except DomainError as exc:
            raise CallFailed.from_domain(exc) from None
        raw = await self.forward(route, request.SerializeToString(), principal, request_id=request_id, timeout=timeout)
        return route.response_class().FromString(raw)

    async def forward(
        self, route: Route, payload: bytes, principal: Principal, *, request_id: str, timeout: float | None
    ) -> bytes:
        """Send serialized ``payload`` to the owning service; retries only idempotent (GET) methods."""
        channel = self._channels[route.service.full_name]
        call = channel.unary_unary(route.grpc_path)  # bytes in, bytes out
        metadata = ((WORKSPACE_HEADER, principal.workspace_id), (REQUEST_ID_HEADER, request_id))
        deadline = timeout if timeout is not None else self._default_timeout
        attempts = 2 if route.verb == "GET" else 1
        for attempt in range(attempts):
            try:
                return await call(payload, metadata=metadata, timeout=deadline)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE and attempt + 1 < attempts:
                    await asyncio.sleep(0.05)
                    continue
                raise CallFailed.from_rpc_error(exc) from None
        raise AssertionError("unreachable")


def exposed_services() -> list[ServiceDescriptor]:
    """Every service the gateway exposes, HTTP and gRPC."""
    return [
        gateway_pb2.DESCRIPTOR.services_by_name["CollectionService"],
        identity_pb2.DESCRIPTOR.services_by_name["IdentityService"],
        profile_pb2.DESCRIPTOR.services_by_name["ProfileService"],
        segment_pb2.DESCRIPTOR.services_by_name["SegmentService"],
        campaign_pb2.DESCRIPTOR.services_by_name["JourneyService"],
    ]
