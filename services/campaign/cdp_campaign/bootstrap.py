"""The one place that wires the campaign service together."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc

from cdp.campaign.v1 import campaign_pb2, campaign_pb2_grpc
from cdp_campaign import consumers
from cdp_campaign.config import SCHEMA, Settings
from cdp_campaign.delivery import Sender
from cdp_campaign.grpc_api import JourneyServicer
from cdp_campaign.ports import CrossSell, GrpcProfilePort, GrpcSegmentPort, WorkspaceFacts
from cdp_campaign.providers import (
    DestinationGuard,
    NoProvider,
    Provider,
    SinkProvider,
    SmtpProvider,
    WebhookProvider,
    WebhookStepProvider,
)
from cdp_campaign.runner import JourneyCatalog, JourneyRunner
from cdp_campaign.service import JourneyService
from cdp_campaign.workers import PollingWorker
from cdpkit.clock import Clock
from cdpkit.consumer import ConsumerLoop
from cdpkit.outbox import OutboxRelay
from cdpkit.runtime import Infrastructure, ServiceRuntime
from cdpkit.server import Registration, create_server


def providers(settings: Settings) -> dict[str, Provider]:
    sink = SinkProvider(settings.sink_path) if settings.sink_path else None
    signing_key = settings.webhook_signing_key.get()
    chosen: dict[str, Provider] = {}
    for channel in ("email", "sms", "push", "wechat"):
        kind = settings.provider_of(channel)
        if kind == "sink":
            assert sink is not None
            chosen[channel] = sink
        elif kind == "smtp":
            chosen[channel] = SmtpProvider(
                host=settings.smtp_host,
                port=settings.smtp_port,
                sender=settings.smtp_from,
                username=settings.smtp_username,
                password=settings.smtp_password.get(),
                tls=settings.smtp_tls,
                timeout=settings.send_timeout_seconds,
            )
        elif kind == "webhook":
            url = getattr(settings, f"{channel}_url")
            chosen[channel] = WebhookProvider(url, signing_key=signing_key, timeout=settings.send_timeout_seconds)
        else:
            chosen[channel] = NoProvider(channel)
    chosen["webhook"] = WebhookStepProvider(
        DestinationGuard(settings.webhook_allowed_hosts), signing_key=signing_key, timeout=settings.send_timeout_seconds
    )
    return chosen


class _Closer:
    """Closes what the workers share (gRPC channels, provider sessions) when the service stops."""

    name = "campaign-closer"

    def __init__(self, *closers: Callable[[], Awaitable[None]]) -> None:
        self._closers = closers
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        await self._stopped.wait()
        for close in self._closers:
            await close()

    def stop(self) -> None:
        self._stopped.set()


async def bootstrap(settings: Settings, clock: Clock | None = None) -> ServiceRuntime:
    clock = clock or settings.clock()
    infra = await Infrastructure.open(settings, schema=SCHEMA, client_name="cdp-campaign")
    profile_channel = grpc.aio.insecure_channel(settings.profile_target)
    segment_channel = grpc.aio.insecure_channel(settings.segment_target)
    profile = GrpcProfilePort(profile_channel, timeout=settings.call_timeout_seconds)
    segment = GrpcSegmentPort(segment_channel, timeout=settings.call_timeout_seconds)
    facts = WorkspaceFacts(profile, ttl_seconds=settings.time_zone_cache_seconds)
    cross_sell = CrossSell(profile, segment, ttl_seconds=settings.cross_sell_cache_seconds)
    catalog = JourneyCatalog(
        infra.pool, ttl_seconds=settings.journey_cache_seconds, max_versions=settings.definition_cache_size
    )
    runner = JourneyRunner(
        infra.pool,
        infra.names,
        catalog,
        profile,
        segment,
        clock,
        facts=facts,
        cross_sell=cross_sell,
        batch=settings.scheduler_batch,
        claim_seconds=settings.claim_seconds,
    )
    sender = Sender(
        infra.pool,
        infra.names,
        catalog,
        profile,
        providers(settings),
        clock,
        facts=facts,
        batch=settings.send_batch,
        max_attempts=settings.max_attempts,
        backoff=settings.retry_backoff_seconds,
        send_timeout=settings.send_timeout_seconds,
        claim_seconds=settings.claim_seconds,
    )
    service = JourneyService(
        infra.pool, infra.names, catalog, clock, facts, webhooks=DestinationGuard(settings.webhook_allowed_hosts)
    )
    server = create_server(
        [
            Registration(
                JourneyServicer(service),
                campaign_pb2_grpc.add_JourneyServiceServicer_to_server,
                campaign_pb2.DESCRIPTOR.services_by_name["JourneyService"],
            )
        ]
    )
    specs = consumers.specs(infra.names, settings.consumer_batch)
    handlers = consumers.handlers(runner)
    workers = [
        *(ConsumerLoop(infra.js, infra.names, specs[key].tuned(settings), handlers[key]) for key in specs),
        PollingWorker(
            "campaign-scheduler",
            infra.pool,
            [runner.run_due_journeys, runner.run_due],
            poll_seconds=settings.poll_seconds,
            wake_on="instances",
        ),
        PollingWorker(
            "campaign-sender", infra.pool, [sender.run_once], poll_seconds=settings.poll_seconds, wake_on="deliveries"
        ),
        OutboxRelay(infra.pool, infra.js, schema=SCHEMA),
        _Closer(sender.close, profile_channel.close, segment_channel.close),
    ]
    runtime = ServiceRuntime.for_service("campaign", settings, infra, server, workers)
    # For tests and benchmarks: drive the scheduler and the sender by hand, look at the tables.
    runtime.runner, runtime.sender, runtime.clock, runtime.pool = runner, sender, clock, infra.pool
    return runtime
