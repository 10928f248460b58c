"""The one place that wires the profile service together."""

from __future__ import annotations

from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_profile.config import SCHEMA, Settings
from cdp_profile.consumers import ResolvedEventsHandler, resolved_events_consumer
from cdp_profile.grpc_api import ProfileServicer
from cdp_profile.service import ProfileService
from cdpkit.consumer import ConsumerLoop
from cdpkit.outbox import OutboxRelay
from cdpkit.runtime import Infrastructure, ServiceRuntime
from cdpkit.server import Registration, create_server


async def bootstrap(settings: Settings) -> ServiceRuntime:
    infra = await Infrastructure.open(settings, schema=SCHEMA, client_name="cdp-profile")
    service = ProfileService(infra.pool, infra.names)
    server = create_server(
        [
            Registration(
                ProfileServicer(service),
                profile_pb2_grpc.add_ProfileServiceServicer_to_server,
                profile_pb2.DESCRIPTOR.services_by_name["ProfileService"],
            )
        ]
    )
    workers = [
        ConsumerLoop(
            infra.js,
            infra.names,
            resolved_events_consumer(settings.consumer_batch).tuned(settings),
            ResolvedEventsHandler(service),
        ),
        OutboxRelay(infra.pool, infra.js, schema=SCHEMA),
    ]
    return ServiceRuntime.for_service("profile", settings, infra, server, workers)
