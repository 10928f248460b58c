"""The one place that wires the identity service together."""

from __future__ import annotations

from functools import partial

import structlog

from cdp.identity.v1 import identity_pb2, identity_pb2_grpc
from cdp_identity.config import SCHEMA, Settings
from cdp_identity.consumers import RawEventsHandler, raw_events_consumer
from cdp_identity.grpc_api import IdentityServicer
from cdp_identity.service import IdentityService, convert_plaintext_pii, reseal
from cdp_identity.workers import Maintenance, Suggester
from cdpkit.bus import DAY, RAW
from cdpkit.clock import Clock
from cdpkit.consumer import ConsumerLoop
from cdpkit.outbox import OutboxRelay
from cdpkit.runtime import Infrastructure, ServiceRuntime
from cdpkit.server import Registration, create_server

log = structlog.get_logger(__name__)


async def bootstrap(settings: Settings, clock: Clock | None = None) -> ServiceRuntime:
    clock = clock or settings.clock()
    vault = settings.pii_vault()
    if settings.journal_days * DAY < RAW.max_age_seconds:
        # Replays are read-only while the journal remembers them (docs/identity.md, Replays).
        log.warning(
            "the journal is shorter than the raw stream's retention: older raw events replayed are resolved again",
            journal_days=settings.journal_days,
            raw_stream_days=RAW.max_age_seconds / DAY,
        )
    infra = await Infrastructure.open(settings, schema=SCHEMA, client_name="cdp-identity")
    service = IdentityService(
        infra.pool, infra.names, vault, journal_days=settings.journal_days, locking=settings.locking, clock=clock
    )
    # Rows written in plaintext before migration 0002 are converted before anything reads them.
    converted = await convert_plaintext_pii(infra.pool, service)
    if converted:
        log.info("plaintext PII identifiers converted to keyed hash + AES-GCM", rows=converted)
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
        # Announcements carry identifiers (phones, e-mails): sealed at rest, opened to publish.
        OutboxRelay(infra.pool, infra.js, schema=SCHEMA, sealer=vault),
        Maintenance(
            infra.pool,
            journal_days=settings.journal_days,
            conflict_days=settings.conflict_days,
            clock=clock,
            reseal=partial(reseal, infra.pool, vault),
        ),
        Suggester(service, interval=settings.suggest_interval_seconds),
    ]
    return ServiceRuntime.for_service("identity", settings, infra, server, workers)
