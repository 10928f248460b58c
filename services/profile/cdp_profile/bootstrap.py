"""The one place that wires the profile service together."""

from __future__ import annotations

import orjson

from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_profile.config import SCHEMA, Settings
from cdp_profile.consumers import IdentityFollower, ResolvedEventsHandler, resolved_events_consumer
from cdp_profile.grpc_api import ProfileServicer
from cdp_profile.service import ProfileService
from cdp_profile.workers import PartitionMaintenance, TimerWorker
from cdpkit.clock import Clock
from cdpkit.consumer import ConsumerLoop
from cdpkit.outbox import OutboxRelay
from cdpkit.runtime import Infrastructure, ServiceRuntime
from cdpkit.server import Registration, create_server


async def bootstrap(settings: Settings, clock: Clock | None = None) -> ServiceRuntime:
    vault = settings.pii_vault()
    clock = clock or settings.clock()
    infra = await Infrastructure.open(settings, schema=SCHEMA, client_name="cdp-profile", json_decoder=orjson.loads)
    service = ProfileService(infra.pool, infra.names, vault, clock)
    await service.maintain_partitions(settings.partition_months_ahead)
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
        IdentityFollower(service, infra.js, infra.names, max_attempts=settings.consumer_max_deliver),
        # ProfileChanged rows are sealed at rest (personal data), opened to publish.
        OutboxRelay(infra.pool, infra.js, schema=SCHEMA, sealer=vault),
        TimerWorker(service, batch=settings.timer_batch, interval=settings.timer_interval_seconds),
        PartitionMaintenance(service, months_ahead=settings.partition_months_ahead),
    ]
    return ServiceRuntime.for_service("profile", settings, infra, server, workers)
