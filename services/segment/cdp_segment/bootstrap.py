"""The one place that wires the segment service together."""

from __future__ import annotations

from cdp.segment.v1 import segment_pb2, segment_pb2_grpc
from cdp_segment.config import SCHEMA, Settings
from cdp_segment.grpc_api import SegmentServicer
from cdp_segment.service import SegmentService
from cdpkit.outbox import OutboxRelay
from cdpkit.runtime import Infrastructure, ServiceRuntime
from cdpkit.server import Registration, create_server


async def bootstrap(settings: Settings) -> ServiceRuntime:
    infra = await Infrastructure.open(settings, schema=SCHEMA, client_name="cdp-segment")
    service = SegmentService(infra.pool)
    server = create_server(
        [
            Registration(
                SegmentServicer(service),
                segment_pb2_grpc.add_SegmentServiceServicer_to_server,
                segment_pb2.DESCRIPTOR.services_by_name["SegmentService"],
            )
        ]
    )
    workers = [OutboxRelay(infra.pool, infra.js, schema=SCHEMA)]
    return ServiceRuntime.for_service("segment", settings, infra, server, workers)
