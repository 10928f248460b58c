"""The one place that wires the segment service together."""

from __future__ import annotations

import functools
import json
from decimal import Decimal

from cdp.segment.v1 import segment_pb2, segment_pb2_grpc
from cdp_segment.config import SCHEMA, Settings
from cdp_segment.consumers import handlers, identity_consumer, objects_consumer, profile_consumer, settings_consumer
from cdp_segment.grpc_api import SegmentServicer
from cdp_segment.live import LiveService
from cdp_segment.membership import Catalogues, Memberships
from cdp_segment.service import SegmentService
from cdpkit.clock import Clock
from cdpkit.consumer import ConsumerLoop
from cdpkit.outbox import OutboxRelay
from cdpkit.periodic import Periodic
from cdpkit.runtime import Infrastructure, ServiceRuntime
from cdpkit.server import Registration, create_server

TIMER_BATCH = 500


async def bootstrap(settings: Settings, clock: Clock | None = None) -> ServiceRuntime:
    clock = clock or settings.clock()
    # Numbers in jsonb are read as exact decimals, as both rule evaluators compare them.
    infra = await Infrastructure.open(
        settings,
        schema=SCHEMA,
        client_name="cdp-segment",
        json_decoder=functools.partial(json.loads, parse_float=Decimal),
    )
    memberships = Memberships(infra.names)
    catalogues = Catalogues(settings.time_zone)
    live = LiveService(infra.pool, memberships, catalogues, clock)
    service = SegmentService(
        infra.pool,
        memberships,
        catalogues,
        clock,
        co_purchase_interval=settings.crosssell_interval_seconds,
    )
    server = create_server(
        [
            Registration(
                SegmentServicer(service),
                segment_pb2_grpc.add_SegmentServiceServicer_to_server,
                segment_pb2.DESCRIPTOR.services_by_name["SegmentService"],
            )
        ]
    )
    apply = handlers(live)
    batch = settings.consumer_batch
    workers = [
        ConsumerLoop(
            infra.js,
            infra.names,
            profile_consumer(
                batch, linger_seconds=settings.consumer_linger_ms / 1000, coalesce=settings.consumer_coalesce
            ).tuned(settings),
            apply["profile"],
        ),
        ConsumerLoop(infra.js, infra.names, objects_consumer(infra.names, batch).tuned(settings), apply["objects"]),
        ConsumerLoop(infra.js, infra.names, settings_consumer(infra.names, batch).tuned(settings), apply["settings"]),
        ConsumerLoop(infra.js, infra.names, identity_consumer(infra.names, batch).tuned(settings), apply["identity"]),
        OutboxRelay(infra.pool, infra.js, schema=SCHEMA),
        Periodic(
            "segment-timers",
            lambda: live.fire_due_timers(TIMER_BATCH),  # how many fired: more may be due
            interval=settings.timer_poll_seconds,
        ),
    ]
    if settings.rfm_interval_seconds > 0:
        workers.append(
            Periodic(
                "segment-rfm",
                lambda: _none(service.recompute_stale_rfm(settings.rfm_interval_seconds)),
                interval=min(settings.rfm_interval_seconds, 60.0),
            )
        )
    if settings.crosssell_interval_seconds > 0:
        workers.append(
            Periodic(
                "segment-co-purchases",
                lambda: _none(service.refresh_stale_co_purchases()),
                interval=min(settings.crosssell_interval_seconds, 60.0),
            )
        )
    return ServiceRuntime.for_service("segment", settings, infra, server, workers)


async def _none(step) -> bool:
    await step
    return False
