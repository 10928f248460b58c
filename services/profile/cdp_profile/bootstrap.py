"""The one place that wires the profile service together."""

from __future__ import annotations

import contextlib

import orjson

from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_profile.config import SCHEMA, Settings
from cdp_profile.consumers import IdentityFollower, ResolvedEventsHandler, resolved_events_consumer
from cdp_profile.grpc_api import ProfileServicer
from cdp_profile.identity_client import IdentityResolver
from cdp_profile.importer import Importer
from cdp_profile.predictions import PredictionService, PredictionSettings, PredictionWorker
from cdp_profile.service import ProfileService
from cdp_profile.upkeep import EventRetention, EventRewrite
from cdp_profile.workers import PartitionMaintenance, TimerWorker
from cdpkit.bus import BusNames
from cdpkit.clock import Clock
from cdpkit.consumer import ConsumerLoop
from cdpkit.db import create_pool
from cdpkit.outbox import OutboxRelay
from cdpkit.runtime import Infrastructure, ServiceRuntime
from cdpkit.server import Registration, create_server


async def bootstrap(settings: Settings, clock: Clock | None = None) -> ServiceRuntime:
    vault = settings.pii_vault()
    clock = clock or settings.clock()
    infra = await Infrastructure.open(
        settings, schema=SCHEMA, client_name="cdp-profile", json_decoder=orjson.loads, read_pool=True
    )
    service = ProfileService(infra.pool, infra.names, vault, clock, reads=infra.reads)
    await service.maintain_partitions(settings.partition_months_ahead)
    predictions = PredictionService(
        infra.pool,
        infra.names,
        clock,
        service.settings_of,
        PredictionSettings(
            horizon_weeks=settings.prediction_horizon_weeks,
            clv_months=settings.prediction_clv_months,
            monthly_discount_rate=settings.prediction_monthly_discount_rate,
            min_change=settings.prediction_min_change,
            announce_batch=settings.prediction_announce_batch,
            interval_seconds=settings.prediction_interval_seconds,
            min_customers=settings.prediction_min_customers,
        ),
    )
    server = create_server(
        [
            Registration(
                ProfileServicer(service, predictions),
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
        TimerWorker(
            service,
            batch=settings.timer_batch,
            interval=settings.timer_interval_seconds,
            event_rewrite=EventRewrite(service, infra.pool, batch=settings.timer_batch),
        ),
        PartitionMaintenance(
            service,
            months_ahead=settings.partition_months_ahead,
            retention=EventRetention(infra.pool, clock, days=settings.event_retention_days),
        ),
        PredictionWorker(predictions, poll_seconds=settings.prediction_poll_seconds),
    ]
    return ServiceRuntime.for_service("profile", settings, infra, server, workers)


@contextlib.asynccontextmanager
async def open_importer(
    settings: Settings, *, identity_target: str = "", chunk: int = 2000, clock: Clock | None = None
):
    """The bulk import's wiring (``python -m cdp_profile import``): a pool on the profile schema,
    the profile's use cases, identity's ResolveIdentities. It needs no NATS: its announcements
    go through the outbox, relayed by the running service."""
    vault = settings.pii_vault()
    clock = clock or settings.clock()
    pool = await create_pool(
        settings.database_url.get(), SCHEMA, application_name="cdp-profile-import", max_size=4,
        json_decoder=orjson.loads,
    )  # fmt: skip
    try:
        names = BusNames(settings.bus_prefix, settings.partitions, settings.stream_replicas)
        service = ProfileService(pool, names, vault, clock)
        async with IdentityResolver(identity_target or settings.identity_target) as resolver:
            yield Importer(pool, service, vault, resolver, clock, chunk=chunk)
    finally:
        await pool.close()
