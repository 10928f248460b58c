"""The one place that wires the campaign service together."""

from __future__ import annotations

from cdp.campaign.v1 import campaign_pb2, campaign_pb2_grpc
from cdp_campaign.config import SCHEMA, Settings
from cdp_campaign.grpc_api import JourneyServicer
from cdp_campaign.service import JourneyService
from cdpkit.outbox import OutboxRelay
from cdpkit.runtime import Infrastructure, ServiceRuntime
from cdpkit.server import Registration, create_server


async def bootstrap(settings: Settings) -> ServiceRuntime:
    infra = await Infrastructure.open(settings, schema=SCHEMA, client_name="cdp-campaign")
    service = JourneyService(infra.pool)
    server = create_server(
        [
            Registration(
                JourneyServicer(service),
                campaign_pb2_grpc.add_JourneyServiceServicer_to_server,
                campaign_pb2.DESCRIPTOR.services_by_name["JourneyService"],
            )
        ]
    )
    workers = [OutboxRelay(infra.pool, infra.js, schema=SCHEMA)]
    return ServiceRuntime.for_service("campaign", settings, infra, server, workers)
