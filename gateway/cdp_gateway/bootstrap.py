"""The one place that wires the gateway together."""

from __future__ import annotations

import grpc

from cdp.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from cdp_gateway.auth import KeyStore
from cdp_gateway.collection import Limits
from cdp_gateway.config import SCHEMA, Settings
from cdp_gateway.dispatch import Dispatcher, exposed_services
from cdp_gateway.grpc_api import CollectionServicer, ProxyHandler
from cdp_gateway.http_api import HttpApi, HttpServer
from cdp_gateway.ingest import Ingestion
from cdp_gateway.publisher import EventPublisher
from cdp_gateway.transcoding import Router, routes_for
from cdpkit.runtime import Infrastructure, ServiceRuntime
from cdpkit.server import Registration, create_server


class GatewayRuntime(ServiceRuntime):
    """The service runtime plus the HTTP server (its port is known once it listens) and keys."""

    def __init__(self, *, http: HttpServer, keys: KeyStore, **kwargs) -> None:
        super().__init__(workers=[http], **kwargs)
        self.http = http
        self.keys = keys

    async def start(self) -> None:
        await super().start()
        await self.http.wait_started()

    @property
    def http_port(self) -> int | None:
        return self.http.port


async def bootstrap(settings: Settings) -> GatewayRuntime:
    infra = await Infrastructure.open(settings, schema=SCHEMA, client_name="cdp-gateway")
    keys = KeyStore(infra.pool, ttl=settings.key_cache_seconds)
    ingestion = Ingestion(
        EventPublisher(infra.js, infra.names, chunk_size=settings.chunk_size),
        Limits(max_message_bytes=settings.max_message_bytes, max_batch_bytes=settings.max_batch_bytes),
    )
    routes = routes_for(exposed_services())
    targets = {
        "cdp.identity.v1.IdentityService": settings.identity_target,
        "cdp.profile.v1.ProfileService": settings.profile_target,
        "cdp.segment.v1.SegmentService": settings.segment_target,
        "cdp.campaign.v1.JourneyService": settings.campaign_target,
    }
    channels = {service: grpc.aio.insecure_channel(target) for service, target in targets.items()}
    dispatcher = Dispatcher(
        routes,
        channels,
        {"/cdp.gateway.v1.CollectionService/IngestEvents": ingestion.ingest},
        default_timeout=settings.backend_timeout_seconds,
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
        ).app(),
        settings.http_host,
        settings.http_port,
        shutdown_timeout=settings.shutdown_grace_seconds,
    )

    async def close() -> None:
        for channel in channels.values():
            await channel.close()
        await infra.close()

    return GatewayRuntime(
        http=http,
        keys=keys,
        name="gateway",
        server=server,
        grpc_address=f"{settings.grpc_host}:{settings.grpc_port}",
        readiness=infra.ready,
        close=close,
        metrics_host=settings.metrics_host,
        metrics_port=settings.metrics_port,
        shutdown_grace=settings.shutdown_grace_seconds,
    )
