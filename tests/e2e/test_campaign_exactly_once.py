"""Exactly once under SIGKILL: the campaign process (a real subprocess) is killed with -9 in the
middle of a burst of 300 messages (150 e-mails over SMTP, 150 SMS over the HTTP webhook
provider), restarted, and every message is delivered exactly once, counted at a real aiosmtpd
server and a real webhook receiver, each of which recognises a repeated idempotency key the
way a provider does. Profile and segment are contract doubles on real gRPC sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import asyncpg
import grpc
import nats
import pytest
import yaml
from google.protobuf import json_format

import cdp_campaign
from cdp.campaign.v1 import campaign_pb2, campaign_pb2_grpc
from cdp.events.v1 import events_pb2
from cdp_devstack.infra import free_port
from cdpkit.bus import CAMPAIGN, BusNames
from cdpkit.clock import OffsetFileClock

from .campaign_kit import no_quiet_hours, publish_journey, publish_resolved
from .contract_doubles import Doubles
from .delivery_receivers import SmtpReceiver, WebhookReceiver, eventually

pytestmark = pytest.mark.e2e

WS = "demo"
CART = yaml.safe_load((Path(cdp_campaign.__file__).parent / "library" / "cart-abandonment.yaml").read_text())[
    "definition"
]
PERSONS = 150
JOURNEY = {
    "trigger": {"event": {"name": "Checkout Started"}},
    "steps": [
        {
            "id": "mail",
            "send": {"channel": "email", "template": {"subject": "Order {{ event.properties.n }}", "body": "."}},
        },
        {"id": "text", "send": {"channel": "sms", "template": {"body": "Your order {{ event.properties.n }}"}}},
    ],
}


class CampaignProcess:
    def __init__(self, env: dict[str, str], log_path, port: int) -> None:
        self.env = env
        self.log_path = log_path
        self.port = port
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "a")  # noqa: SIM115 - the child writes to it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cdp_campaign", "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def _serving(port: int) -> bool:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            return answer.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.aio.AioRpcError:
        return False


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


@pytest.fixture
def campaign(tmp_path, database_url, nats_url, bus_prefix, doubles, smtp, webhooks):
    """The campaign service as a subprocess (not started yet) wired to the doubles and receivers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDP_")}
    env.update(
        {
            "CDP_DATABASE_URL": database_url,
            "CDP_NATS_URL": nats_url,
            "CDP_BUS_PREFIX": bus_prefix,
            "CDP_CAMPAIGN_GRPC_PORT": str(port),
            "CDP_CAMPAIGN_METRICS_PORT": "0",
            "CDP_CAMPAIGN_PROFILE_TARGET": doubles.target,
            "CDP_CAMPAIGN_SEGMENT_TARGET": doubles.target,
            "CDP_CAMPAIGN_SEND_BATCH": "20",
            "CDP_CAMPAIGN_POLL_SECONDS": "0.2",
            "CDP_CONSUMER_ACK_WAIT_SECONDS": "3",
            "CDP_CONSUMER_LEASE_SECONDS": "3",
            "CDP_CLOCK_OFFSET_FILE": str(tmp_path / "clock-offset"),
            "CDP_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            **smtp.env(),
            **webhooks.env(),
        }
    )
    process = CampaignProcess(env, tmp_path / "campaign.log", port)
    yield process
    process.stop()


async def test_sigkill_during_a_send_burst_then_restart_sends_every_message_exactly_once(
    campaign, database_url, nats_url, bus_prefix, doubles, smtp, webhooks
):
    port = campaign.port
    nc = await nats.connect(nats_url)
    try:
        for n in range(PERSONS):
            person = f"p-{n:03d}"
            doubles.profile.put(
                WS,
                person,
                traits={"email": f"{person}@example.com", "phone": f"+8613900{n:06d}"},
                consents={"email": True, "sms": True},
            )
        campaign.start()
        await eventually(lambda: _serving(port), timeout=60, interval=0.2, what="campaign SERVING")
        await no_quiet_hours(f"127.0.0.1:{port}", WS)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await publish_journey(campaign_pb2_grpc.JourneyServiceStub(channel), WS, "burst", JOURNEY)

        js = nc.jetstream()
        names = BusNames(bus_prefix, 4)
        announced = await js.subscribe(names.subject(CAMPAIGN, "message_sent"))
        for n in range(PERSONS):
            await publish_resolved(js, names, WS, f"p-{n:03d}", "Checkout Started", f"checkout-{n}", n=n)

        # Mid-burst: kill -9 once some messages went out and many have not.
        await eventually(lambda: len(smtp.delivered) + len(webhooks.delivered) >= 40, interval=0.01, what="burst")
        campaign.kill()
        at_kill = len(smtp.delivered) + len(webhooks.delivered)
        assert at_kill < 2 * PERSONS, "the burst ended before the kill: nothing was tested"
        campaign.start()
        await eventually(
            lambda: len(smtp.delivered) == PERSONS and len(webhooks.delivered) == PERSONS,
            timeout=90,
            interval=0.2,
            what=f"every message (smtp {len(smtp.delivered)}, webhook {len(webhooks.delivered)})",
        )
        await asyncio.sleep(2)  # anything sent twice would arrive now

        # At the providers: every person's e-mail and SMS, each delivered once.
        assert sorted(m["to"][0] for m in smtp.delivered.values()) == [f"p-{n:03d}@example.com" for n in range(PERSONS)]
        assert sorted(v["body"]["to"] for v in webhooks.delivered.values()) == sorted(
            f"+8613900{n:06d}" for n in range(PERSONS)
        )
        # What reached a provider twice (the batch in flight at the kill, re-sent with its key)
        # stayed within one send batch per channel.
        resent = (sum(smtp.transmissions.values()) - PERSONS) + (sum(webhooks.posts.values()) - PERSONS)
        assert 0 <= resent <= 2 * 20

        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch("SELECT status, count(*) AS n FROM campaign.deliveries GROUP BY status")
            assert {r["status"]: r["n"] for r in rows} == {"sent": 2 * PERSONS}
            assert await conn.fetchval("SELECT count(*) FROM campaign.instances") == PERSONS
        finally:
            await conn.close()
        # And each message_sent announcement once (outbox, de-duplicated by msg id).
        sent_ids = []
        while True:
            try:
                msg = await announced.next_msg(timeout=3)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            sent_ids.append(events_pb2.CampaignMessage.FromString(msg.data).delivery_id)
        assert len(sent_ids) == len(set(sent_ids)) == 2 * PERSONS
        print(f"killed after {at_kill} deliveries; {resent} re-sent with their idempotency key")
    finally:
        await nc.close()


async def test_cart_abandonment_across_processes_with_the_offset_file_clock(
    campaign, nats_url, bus_prefix, doubles, smtp
):
    """The same journey as in-process, with the service in its own process moved by
    CDP_CLOCK_OFFSET_FILE: no order within the hour -> one e-mail; an order -> none."""
    for person in ("p-ann", "p-bob"):
        doubles.profile.put(WS, person, traits={"email": f"{person}@example.com"}, consents={"email": True})
    campaign.start()
    await eventually(lambda: _serving(campaign.port), timeout=60, interval=0.2, what="campaign SERVING")
    await no_quiet_hours(f"127.0.0.1:{campaign.port}", WS)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{campaign.port}") as channel:
        stub = campaign_pb2_grpc.JourneyServiceStub(channel)
        templates = await stub.ListJourneyTemplates(campaign_pb2.ListJourneyTemplatesRequest(parent=f"workspaces/{WS}"))
        (cart,) = [t for t in templates.templates if t.name.endswith("/cart-abandonment")]
        await publish_journey(stub, WS, "cart", json_format.MessageToDict(cart.definition))
        nc = await nats.connect(nats_url)
        try:
            js, names = nc.jetstream(), BusNames(bus_prefix, 4)
            await publish_resolved(js, names, WS, "p-ann", "Product Added", "ann-1", name="Poles")
            await publish_resolved(js, names, WS, "p-bob", "Product Added", "bob-1", name="Jacket")

            async def instances():
                page = await stub.ListJourneyInstances(
                    campaign_pb2.ListJourneyInstancesRequest(parent=f"workspaces/{WS}/journeys/cart")
                )
                return {i.person_id: (i.state, i.step_id) for i in page.instances}

            await eventually(lambda: _len_is(instances(), 2), what="two enrolments")
            await publish_resolved(js, names, WS, "p-bob", "Order Completed", "bob-2", revenue=10)
            await eventually(
                lambda: _equals(instances(), {"p-ann": ("active", "wait-for-order"), "p-bob": ("exited", "ordered")}),
                what="bob's order to end his wait",
            )
        finally:
            await nc.close()
        OffsetFileClock(campaign.env["CDP_CLOCK_OFFSET_FILE"]).advance(timedelta(minutes=61))
        await eventually(lambda: len(smtp.delivered) == 1, what="ann's reminder")
        await asyncio.sleep(1)
        assert [m["to"] for m in smtp.delivered.values()] == [["p-ann@example.com"]]
        assert sum(smtp.transmissions.values()) == 1


async def _len_is(coro, n):
    return len(await coro) == n


async def _equals(coro, expected):
    return await coro == expected
