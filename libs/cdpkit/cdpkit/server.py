"""grpc.aio server factory: health, reflection, logging and error-mapping interceptors.

``create_server`` registers the servicers, the official asyncio health service (every
service starts NOT_SERVING until the runtime's readiness check passes) and reflection. Two
interceptors wrap every RPC (health and reflection excepted):

- :class:`LoggingInterceptor` binds ``rpc_method``, ``request_id`` and ``workspace`` to the
  structlog context and writes one canonical line per RPC with its code and duration;
- :class:`ErrorMappingInterceptor` turns :class:`cdpkit.errors.DomainError` into a
  ``google.rpc.Status`` (field violations included), a transaction the database rolled back (a
  deadlock, a serialization failure) into ABORTED (retryable) and any other exception into
  INTERNAL, never leaking a stack trace to the caller.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import structlog
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from cdpkit.errors import DomainError
from cdpkit.ids import new_id
from cdpkit.metrics import RPC_SECONDS

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "x-request-id"
WORKSPACE_HEADER = "x-cdp-workspace"

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _is_infrastructure(method: str) -> bool:
    return method.startswith("/grpc.")


def _wrap(handler: grpc.RpcMethodHandler, around: Callable[..., Any]) -> grpc.RpcMethodHandler:
    """Rebuild a unary-unary or unary-stream handler with ``around`` around its behaviour."""
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await around(lambda: inner(request, context), context)

        return grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
    if handler.unary_stream is not None:
        inner_stream = handler.unary_stream

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async def drain() -> None:
                produced = inner_stream(request, context)
                if not hasattr(produced, "__aiter__"):
                    await produced  # an inner interceptor's wrapper: it writes the items itself
                    return
                async for item in produced:
                    await context.write(item)

            await around(drain, context)

        return grpc.unary_stream_rpc_method_handler(
            stream, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
    return handler


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or _is_infrastructure(details.method):
            return handler

        async def around(call: Callable[[], Awaitable[Any]], context: grpc.aio.ServicerContext) -> Any:
            try:
                return await call()
            except DomainError as exc:
                status = rpc_status.to_status(exc.to_status())
                await context.abort(status.code, status.details, status.trailing_metadata)
            except grpc.aio.AbortError:
                raise
            except NotImplementedError:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "method not implemented")
            except asyncpg.TransactionRollbackError:
                # A deadlock or serialization failure: nothing was changed and a retry may succeed.
                log.warning("transaction rolled back by the database", exc_info=True)
                await context.abort(grpc.StatusCode.ABORTED, "a concurrent change won; retry")
            except Exception:
                log.exception("unhandled error in rpc")
                await context.abort(grpc.StatusCode.INTERNAL, "internal error")

        return _wrap(handler, around)


class LoggingInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or _is_infrastructure(details.method):
            return handler
        method = details.method

        async def around(call: Callable[[], Awaitable[Any]], context: grpc.aio.ServicerContext) -> Any:
            metadata = dict(context.invocation_metadata() or ())
            request_id = metadata.get(REQUEST_ID_HEADER) or new_id()
            structlog.contextvars.bind_contextvars(
                rpc_method=method, request_id=request_id, workspace=metadata.get(WORKSPACE_HEADER)
            )
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return await call()
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except BaseException:
                code = grpc.StatusCode.UNKNOWN
                raise
            finally:
                if code == grpc.StatusCode.OK and context.code() not in (None, grpc.StatusCode.OK):
                    code = context.code()
                elapsed = time.perf_counter() - started
                RPC_SECONDS.labels(method, code.name).observe(elapsed)
                log.info("rpc", code=code.name, duration_ms=round(elapsed * 1000, 2))
                structlog.contextvars.unbind_contextvars("rpc_method", "request_id", "workspace")

        return _wrap(handler, around)


@dataclass(frozen=True)
class Registration:
    """One servicer to serve: the servicer, its generated ``add_..._to_server`` and descriptor."""

    servicer: object
    add_to_server: Callable[[object, grpc.aio.Server], None]
    descriptor: ServiceDescriptor


# Health service name that is SERVING from start to shutdown whatever the dependencies say: the
# liveness probe's (a database outage must make pods unready, never restart them all).
LIVENESS = "liveness"


class GrpcServer:
    def __init__(self, server: grpc.aio.Server, health: health_aio.HealthServicer, service_names: Sequence[str]):
        self.server = server
        self.health = health
        self.service_names = tuple(service_names)
        self.port: int | None = None

    async def start(self, address: str) -> int:
        self.port = self.server.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"could not bind gRPC server to {address}")
        await self.server.start()
        await self.health.set(LIVENESS, _SERVING)
        return self.port

    async def set_serving(self, serving: bool) -> None:
        status = _SERVING if serving else _NOT_SERVING
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


def create_server(
    registrations: Sequence[Registration],
    *,
    interceptors: Sequence[grpc.aio.ServerInterceptor] | None = None,
    options: Sequence[tuple[str, Any]] = (),
    generic_handlers: Sequence[grpc.GenericRpcHandler] = (),
    generic_service_names: Sequence[str] = (),
) -> GrpcServer:
    """A server with our servicers, health (NOT_SERVING until ready) and reflection.

    ``generic_handlers`` serve services without a generated servicer (the gateway's proxy);
    ``generic_service_names`` lists them for reflection and health.
    """
    server = grpc.aio.server(
        interceptors=list(interceptors)
        if interceptors is not None
        else [LoggingInterceptor(), ErrorMappingInterceptor()],
        options=[("grpc.max_receive_message_length", 8 * 1024 * 1024), *options],
    )
    for registration in registrations:
        registration.add_to_server(registration.servicer, server)
    if generic_handlers:
        server.add_generic_rpc_handlers(list(generic_handlers))
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    names = [r.descriptor.full_name for r in registrations] + list(generic_service_names)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    return GrpcServer(server, health, names)
