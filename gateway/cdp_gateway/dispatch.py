"""Calling the services on behalf of an authenticated caller, for HTTP and gRPC alike.

Authorisation is the same for both doors and comes from the descriptors: CollectionService
takes a write key; a method with the ``(cdp.gateway.v1.required_scope)`` option needs a secret
key with that scope; every other method a secret key with the ``read`` scope (GET routes) or
``write`` scope (the rest). The resource named by the request (its first path variable:
``name``, ``parent``, ``segment.name`` ...) must belong to the key's workspace. Then the key's
rate limit is charged (collection charges per event, in the ingestion).

The exposed services are discovered, not listed: every service of the generated ``cdp``
package with at least one ``google.api.http`` annotation. A method added to a service's proto
gets its HTTP route and its gRPC forwarding at the next start, with no gateway code.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import cache
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from google.rpc import status_pb2

import cdp
from cdp.gateway.v1 import options_pb2
from cdp_gateway.keys import WRITE, Principal
from cdp_gateway.limits import RateLimiter
from cdp_gateway.transcoding import Route
from cdpkit.errors import DomainError, PermissionDenied
from cdpkit.server import REQUEST_ID_HEADER, WORKSPACE_HEADER

COLLECTION_SERVICE = "cdp.gateway.v1.CollectionService"
GATEWAY_PACKAGE = "cdp.gateway.v1"
# handler(request, principal, *, request_id=..., timeout=...) -> response
LocalHandler = Callable[..., Awaitable[Message]]


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


def required_scope(route: Route) -> str:
    """The scope a secret key needs for ``route``: the method option, else by HTTP verb."""
    declared = route.method.GetOptions().Extensions[options_pb2.required_scope]
    return declared or ("read" if route.verb == "GET" else "write")


def authorize(route: Route, principal: Principal, request: Message) -> None:
    if route.service.full_name == COLLECTION_SERVICE:
        if principal.kind != WRITE and not principal.may("write"):
            raise PermissionDenied("a write key is required to send events")
    else:
        scope = required_scope(route)
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
        limiter: RateLimiter | None = None,
    ) -> None:
        # The first HTTP binding of each method names its resource field.
        self.routes_by_path: dict[str, Route] = {}
        for route in routes:
            self.routes_by_path.setdefault(route.grpc_path, route)
        self._channels = channels
        self._local = local
        self._default_timeout = default_timeout
        self._limiter = limiter

    def is_local(self, route: Route) -> bool:
        return route.grpc_path in self._local

    def admit(self, route: Route, principal: Principal, request: Message) -> None:
        """Authorise, then charge the key's rate limit (collection is charged per event later)."""
        authorize(route, principal, request)
        if self._limiter is not None and route.service.full_name != COLLECTION_SERVICE:
            self._limiter.take(principal, 1)

    async def invoke(
        self, route: Route, request: Message, principal: Principal, *, request_id: str, timeout: float | None
    ) -> Message:
        try:
            self.admit(route, principal, request)
            local = self._local.get(route.grpc_path)
            if local is not None:
                return await local(request, principal, request_id=request_id, timeout=timeout)
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


def _annotated(service: ServiceDescriptor) -> bool:
    from google.api import annotations_pb2

    return any(m.GetOptions().HasExtension(annotations_pb2.http) for m in service.methods)


@cache
def exposed_services() -> tuple[ServiceDescriptor, ...]:
    """Every service the gateway exposes, HTTP and gRPC: those of the generated ``cdp`` package
    with at least one ``google.api.http`` annotation; the gateway's own first, then by name."""
    found: dict[str, ServiceDescriptor] = {}
    for module_info in pkgutil.walk_packages(cdp.__path__, prefix="cdp."):
        if not module_info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(module_info.name)
        for service in module.DESCRIPTOR.services_by_name.values():
            if _annotated(service):
                found[service.full_name] = service
    return tuple(sorted(found.values(), key=lambda s: (s.file.package != GATEWAY_PACKAGE, s.full_name)))


def backend_package(service: ServiceDescriptor) -> str | None:
    """The component owning a forwarded service ("identity" for cdp.identity.v1.*); None for
    the gateway's own services."""
    package = service.file.package
    if package == GATEWAY_PACKAGE:
        return None
    return package.split(".")[1]
