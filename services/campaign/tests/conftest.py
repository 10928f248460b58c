"""Campaign test kit: the service in this event loop with a ManualClock, contract doubles of
profile and segment on real gRPC sockets, a real SMTP server and a real webhook receiver."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import nats
import pytest
from google.protobuf import struct_pb2

from cdp.campaign.v1 import campaign_pb2, campaign_pb2_grpc
from cdp_campaign import __main__ as campaign_main
from cdpkit.bus import BusNames
from cdpkit.clock import ManualClock
from cdpkit.config import load
from cdpkit.migrate import migrate


def _shared(name: str):
    """A helper module of tests/e2e (shared with the end-to-end tests), loaded by path: importing the
    package ``tests`` from here would shadow other components' own ``tests`` packages."""
    path = Path(__file__).resolve().parents[3] / "tests" / "e2e" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"cdp_campaign_test_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


Doubles = _shared("contract_doubles").Doubles
_kit = _shared("campaign_kit")
_receivers = _shared("delivery_receivers")
SmtpReceiver, WebhookReceiver, eventually = _receivers.SmtpReceiver, _receivers.WebhookReceiver, _receivers.eventually

WS = "shop"
# 10:00 in Shanghai: outside the default quiet hours (21:00-09:00).
START = datetime(2026, 6, 18, 2, 0, tzinfo=UTC)


@pytest.fixture
async def doubles():
    running = await Doubles().start()
    yield running
    await running.stop()


@pytest.fixture
def smtp():
    receiver = SmtpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
async def webhooks():
    receiver = await WebhookReceiver().start()
    yield receiver
    await receiver.stop()


@dataclass
class Campaign:
    runtime: object
    stub: campaign_pb2_grpc.JourneyServiceStub
    clock: ManualClock
    names: BusNames
    js: object

    async def journey(self, journey_id: str, definition: dict, *, publish: bool = True) -> campaign_pb2.Journey:
        if publish:
            return await _kit.publish_journey(self.stub, WS, journey_id, definition)
        struct = struct_pb2.Struct()
        struct.update(definition)
        return await self.stub.CreateJourney(
            campaign_pb2.CreateJourneyRequest(
                parent=f"workspaces/{WS}",
                journey_id=journey_id,
                journey=campaign_pb2.Journey(display_name=journey_id, definition=struct),
            )
        )

    async def track(self, person_id: str, event: str, message_id: str, nats_id: str = "", **properties) -> None:
        """Publish a resolved track event, as identity would (``nats_id``: another chunk id)."""
        await _kit.publish_resolved(
            self.js, self.names, WS, person_id, event, message_id, nats_id=nats_id, **properties
        )

    async def deliveries(self, journey_id: str = "-", status: str = "") -> list[campaign_pb2.Delivery]:
        page = await self.stub.ListDeliveries(
            campaign_pb2.ListDeliveriesRequest(
                parent=f"workspaces/{WS}/journeys/{journey_id}", status=status, page_size=1000
            )
        )
        return list(page.deliveries)

    async def instances(self, journey_id: str) -> list[campaign_pb2.JourneyInstance]:
        page = await self.stub.ListJourneyInstances(
            campaign_pb2.ListJourneyInstancesRequest(parent=f"workspaces/{WS}/journeys/{journey_id}", page_size=1000)
        )
        return list(page.instances)

    async def tick(self) -> None:
        """Run the scheduler and the sender until nothing is due at the clock's time (the workers
        run too, so this also waits for what they hold to commit)."""
        now = self.clock.now()
        for _ in range(500):
            busy = await self.runtime.runner.run_due_journeys()
            busy += await self.runtime.runner.run_due()
            busy += await self.runtime.sender.run_once()
            due = await self.runtime.pool.fetchval(
                """SELECT (SELECT count(*) FROM instances WHERE wake_at <= $1)
                        + (SELECT count(*) FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1)
                        + (SELECT count(*) FROM journeys WHERE next_run_at <= $1 AND state = 'active')""",
                now,
            )
            if not busy and not due:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("work stays due")


@pytest.fixture
async def start_campaign(service_env, doubles, tmp_path):
    """``campaign = await start_campaign(**env)``: the service with a ManualClock at START."""
    runtimes, connections, channels = [], [], []

    async def start(**extra_env) -> Campaign:
        env = {
            **service_env,
            "CDP_CAMPAIGN_GRPC_PORT": "0",
            "CDP_CAMPAIGN_METRICS_PORT": "0",
            "CDP_CAMPAIGN_PROFILE_TARGET": doubles.target,
            "CDP_CAMPAIGN_SEGMENT_TARGET": doubles.target,
            "CDP_CAMPAIGN_SINK_PATH": str(tmp_path / "sink.jsonl"),
            "CDP_CAMPAIGN_POLL_SECONDS": "0.1",
            "CDP_CAMPAIGN_JOURNEY_CACHE_SECONDS": "0",
            "CDP_CAMPAIGN_RETRY_BACKOFF_SECONDS": "60,120",
            "CDP_CAMPAIGN_MAX_ATTEMPTS": "3",
            **extra_env,
        }
        settings = load(campaign_main.Settings, env)
        await migrate(settings.database_url.get(), campaign_main.SCHEMA, campaign_main.MIGRATIONS)
        clock = ManualClock(START)
        runtime = await campaign_main.bootstrap(settings, clock=clock)
        await runtime.start()
        runtimes.append(runtime)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}")
        channels.append(channel)
        nc = await nats.connect(settings.nats_url)
        connections.append(nc)
        names = BusNames(settings.bus_prefix, settings.partitions)
        return Campaign(runtime, campaign_pb2_grpc.JourneyServiceStub(channel), clock, names, nc.jetstream())

    yield start
    for channel in channels:
        await channel.close()
    for nc in connections:
        await nc.close()
    for runtime in reversed(runtimes):
        await runtime.stop()
