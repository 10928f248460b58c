"""The one place that wires the identity service together."""

from __future__ import annotations

from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_identity.config import SCHEMA, Settings
from cdp_identity.consumers import RawEventsHandler, raw_events_consumer
from cdp_identity.grpc_api import IdentityServicer
from cdp_identity.service import IdentityService
from cdpkit.consumer import ConsumerLoop
from cdpkit.outbox import OutboxRelay
from cdpkit.runtime import Infrastructure, ServiceRuntime
from cdpkit.server import Registration, create_server


async def bootstrap(settings: Settings) -> ServiceRuntime:
    infra = await Infrastructure.open(settings, schema=SCHEMA, client_name="cdp-identity")
    service = IdentityService(infra.pool, infra.names)
    server = create_server(
        [
            Registration(
                IdentityServicer(service),
                identity_pb2_grpc.add_IdentityServiceServicer_to_server,
                identity_pb2.DESCRIPTOR.services_by_name["IdentityService"],
            )
        ]
    )
    workers = [
        ConsumerLoop(
            infra.js,
            infra.names,
            raw_events_consumer(settings.consumer_batch).tuned(settings),
            RawEventsHandler(service, infra.js, infra.names),
        ),
        OutboxRelay(infra.pool, infra.js, schema=SCHEMA),
    ]
    return ServiceRuntime.for_service("identity", settings, infra, server, workers)
