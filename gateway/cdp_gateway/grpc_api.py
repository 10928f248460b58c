"""The gateway's gRPC door: CollectionService served here, the gateway's own API services
(ApiKeyService, CustomerService) answered locally, the services' APIs forwarded.

Callers authenticate with ``authorization: Bearer <secret key>`` (or ``Basic`` with a write key
for collection) in the metadata. Forwarded calls keep the caller's deadline and carry the
workspace and request id to the service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from grpc_status import rpc_status

from cdp.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from cdp_gateway.auth import KeyStore
from cdp_gateway.dispatch import COLLECTION_SERVICE, CallFailed, Dispatcher
from cdp_gateway.ingest import Ingestion
from cdp_gateway.keys import Principal, from_authorization
from cdpkit.ids import new_id
from cdpkit.server import REQUEST_ID_HEADER

WRITE_KEY_HEADER = "x-cdp-write-key"


def _key(context: grpc.aio.ServicerContext) -> str | None:
    metadata = dict(context.invocation_metadata() or ())
    return from_authorization(metadata.get("authorization")) or metadata.get(WRITE_KEY_HEADER)


async def _abort(context: grpc.aio.ServicerContext, failure: CallFailed) -> None:
    status = rpc_status.to_status(failure.status)
    await context.abort(status.code, status.details, status.trailing_metadata)


class CollectionServicer(gateway_pb2_grpc.CollectionServiceServicer):
    def __init__(self, keys: KeyStore, ingestion: Ingestion) -> None:
        self._keys = keys
        self._ingestion = ingestion

    async def IngestEvents(
        self, request: gateway_pb2.IngestEventsRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.IngestEventsResponse:
        principal = await self._keys.authenticate_writer(_key(context))
        return await self._ingestion.ingest(request, principal)


class ProxyHandler(grpc.GenericRpcHandler):
    """Every annotated method but collection: forwarded to its owner, or answered by the
    gateway's local handler, after authentication, authorisation and the key's rate limit."""

    def __init__(self, keys: KeyStore, dispatcher: Dispatcher) -> None:
        self._keys = keys
        self._dispatcher = dispatcher
        self.service_names = sorted(
            {
                r.service.full_name
                for r in dispatcher.routes_by_path.values()
                if r.service.full_name != COLLECTION_SERVICE
            }
        )

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        route = self._dispatcher.routes_by_path.get(handler_call_details.method)
        if route is None or route.service.full_name == COLLECTION_SERVICE:
            return None
        request_class = route.request_class()
        local = self._dispatcher.is_local(route)

        async def forward(request: Any, context: grpc.aio.ServicerContext) -> bytes:
            principal: Principal = await self._keys.authenticate(_key(context))
            metadata = dict(context.invocation_metadata() or ())
            request_id = metadata.get(REQUEST_ID_HEADER) or new_id()
            try:
                if local:
                    response = await self._dispatcher.invoke(
                        route, request, principal, request_id=request_id, timeout=context.time_remaining()
                    )
                    return response.SerializeToString()
                self._dispatcher.admit(route, principal, request)
                return await self._dispatcher.forward(
                    route,
                    request.SerializeToString(),
                    principal,
                    request_id=request_id,
                    timeout=context.time_remaining(),
                )
            except CallFailed as failure:
                await _abort(context, failure)
                raise AssertionError("unreachable") from None

        identity: Callable[[bytes], bytes] = lambda payload: payload  # noqa: E731 - already serialized
        return grpc.unary_unary_rpc_method_handler(
            forward, request_deserializer=request_class.FromString, response_serializer=identity
        )
