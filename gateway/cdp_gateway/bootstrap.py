"""The one place that wires the gateway together."""

from __future__ import annotations

import contextlib

import grpc
import structlog

from cdp.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from cdp_gateway.auth import KeyStore
from cdp_gateway.collection import Limits
from cdp_gateway.config import SCHEMA, Settings
from cdp_gateway.customer360 import Customer360Composer
from cdp_gateway.dedup import SeenMessages
from cdp_gateway.dispatch import Dispatcher, backend_package, exposed_services
from cdp_gateway.grpc_api import CollectionServicer, ProxyHandler
from cdp_gateway.http_api import HttpApi, HttpServer
from cdp_gateway.ingest import Ingestion
from cdp_gateway.key_admin import KeyAdmin
from cdp_gateway.limits import RateLimiter
from cdp_gateway.openapi import build_openapi
from cdp_gateway.publisher import EventPublisher
from cdp_gateway.transcoding import Router, routes_for
from cdpkit.runtime import Infrastructure, ServiceRuntime
from cdpkit.server import Registration, create_server

log = structlog.get_logger(__name__)


class GatewayRuntime(ServiceRuntime):
    """The service runtime plus the HTTP server (its port is known once it listens) and keys."""

    def __init__(self, *, http: HttpServer, keys: KeyStore, ingestion: Ingestion, **kwargs) -> None:
        super().__init__(workers=[http], **kwargs)
        self.http = http
        self.keys = keys
        self.ingestion = ingestion

    async def start(self) -> None:
        await super().start()
        await self.http.wait_started()

    @property
    def http_port(self) -> int | None:
        return self.http.port


def key_change_subject(prefix: str) -> str:
    """Core NATS subject (no stream) on which replicas announce rotated and revoked keys."""
    return f"{prefix}.gateway.keys"


async def bootstrap(settings: Settings) -> GatewayRuntime:
    infra = await Infrastructure.open(settings, schema=SCHEMA, client_name="cdp-gateway")
    subject = key_change_subject(settings.bus_prefix)

    async def announce(workspace_id: str, key_id: str) -> None:
        with contextlib.suppress(Exception):  # the cache TTL bounds the delay if this is lost
            await infra.nc.publish(subject, f"{workspace_id}/{key_id}".encode())

    keys = KeyStore(infra.pool, ttl=settings.key_cache_seconds, on_change=announce)

    async def on_key_changed(msg) -> None:
        workspace_id, _, key_id = msg.data.decode().partition("/")
        keys.evict(workspace_id, key_id)

    await infra.nc.subscribe(subject, cb=on_key_changed)

    limiter = RateLimiter(
        write_rate=settings.write_key_rate,
        secret_rate=settings.secret_key_rate,
        burst_seconds=settings.rate_burst_seconds,
        replicas=settings.replicas,
    )
    ingestion = Ingestion(
        EventPublisher(infra.js, infra.names, chunk_size=settings.chunk_size),
        Limits(max_message_bytes=settings.max_message_bytes, max_batch_bytes=settings.max_batch_bytes),
        limiter=limiter,
        seen=SeenMessages(ttl=settings.dedup_seconds, max_entries=settings.dedup_max_entries),
    )
    services = exposed_services()
    routes = routes_for(services)
    targets = {
        "identity": settings.identity_target,
        "profile": settings.profile_target,
        "segment": settings.segment_target,
        "campaign": settings.campaign_target,
    }
    channels: dict[str, grpc.aio.Channel] = {}
    by_target: dict[str, grpc.aio.Channel] = {}
    for service in services:
        package = backend_package(service)
        if package is None:
            continue
        if package not in targets:
            raise RuntimeError(f"no target configured for {service.full_name} (add CDP_{package.upper()}_TARGET)")
        target = targets[package]
        channels[service.full_name] = by_target.setdefault(target, grpc.aio.insecure_channel(target))

    async def ingest(request, principal, **_):
        return await ingestion.ingest(request, principal)

    customer360 = Customer360Composer(
        channels, {s.full_name: s for s in services}, default_timeout=settings.customer360_timeout_seconds
    )
    dispatcher = Dispatcher(
        routes,
        channels,
        {
            "/cdp.gateway.v1.CollectionService/IngestEvents": ingest,
            **KeyAdmin(keys).handlers(),
            **customer360.handlers(),
        },
        default_timeout=settings.backend_timeout_seconds,
        limiter=limiter,
    )
    proxy = ProxyHandler(keys, dispatcher)
    server = create_server(
        [
            Registration(
                CollectionServicer(keys, ingestion),
                gateway_pb2_grpc.add_CollectionServiceServicer_to_server,
                gateway_pb2.DESCRIPTOR.services_by_name["CollectionService"],
            )
        ],
        generic_handlers=[proxy],
        generic_service_names=proxy.service_names,
    )
    http = HttpServer(
        HttpApi(
            keys=keys,
            ingestion=ingestion,
            router=Router(routes),
            dispatcher=dispatcher,
            readiness=infra.ready,
            max_batch_bytes=settings.max_batch_bytes,
            max_api_body_bytes=settings.max_api_body_bytes,
            openapi=build_openapi(routes),
        ).app(),
        settings.http_host,
        settings.http_port,
        shutdown_timeout=settings.shutdown_grace_seconds,
    )

    async def close() -> None:
        for channel in by_target.values():
            await channel.close()
        await infra.close()

    return GatewayRuntime(
        http=http,
        keys=keys,
        ingestion=ingestion,
        name="gateway",
        server=server,
        grpc_address=f"{settings.grpc_host}:{settings.grpc_port}",
        readiness=infra.ready,
        close=close,
        metrics_host=settings.metrics_host,
        metrics_port=settings.metrics_port,
        shutdown_grace=settings.shutdown_grace_seconds,
    )
