"""A journey's webhook step cannot reach private destinations unless the operator allows the
host (CDP_CAMPAIGN_WEBHOOK_ALLOWED_HOSTS). Campaign alone (the webhook step reads no profile),
against a real local HTTP server."""

from __future__ import annotations

import ipaddress
import socket
from datetime import timedelta

import grpc
import pytest

from cdp.campaign.v1 import campaign_pb2

from .campaign_harness import eventually, new_person


def _hook(url: str) -> dict:
    return {
        "trigger": {"event": {"name": "Joined"}},
        "steps": [{"id": "h", "webhook": {"url": url, "body": '{"person": "{{ person_id }}"}'}}],
    }


async def _publish_refusal(c, journey_id: str, url: str) -> str:
    draft = await c.journey(journey_id, _hook(url), publish=False)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.stub.PublishJourney(campaign_pb2.PublishJourneyRequest(name=draft.name))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return error.value.details()


async def test_without_an_allow_list_only_public_destinations(start_campaign, webhooks):
    c = await start_campaign(real=False)  # no CDP_CAMPAIGN_WEBHOOK_ALLOWED_HOSTS
    for n, url in enumerate(
        (webhooks.url("crm"), "http://169.254.169.254/latest/meta-data/", "http://localhost:50062/", "http://[::1]/")
    ):
        details = await _publish_refusal(c, f"private-{n}", url)
        assert details.startswith("journey.definition.steps[0].webhook.url:") and "public" in details
    # A host name passes publish; what it resolves to is checked when connecting.
    host = socket.gethostname()
    resolved = {info[4][0] for info in socket.getaddrinfo(host, 80, proto=socket.IPPROTO_TCP)}
    assert not any(ipaddress.ip_address(a).is_global for a in resolved), "this machine's name must be private"
    await c.journey("by-name", _hook(f"http://{host}:{webhooks.port}/crm"))
    await c.track(new_person(), "Joined")
    (delivery,) = await eventually(lambda: c.deliveries("by-name", status="failed"), what="the refusal")
    assert delivery.reason.startswith("webhook_refused:") and "is not a public address" in delivery.reason
    assert not webhooks.posts


async def test_an_allow_list_admits_its_hosts_only(start_campaign, webhooks):
    c = await start_campaign(real=False, CDP_CAMPAIGN_WEBHOOK_ALLOWED_HOSTS="127.0.0.1")
    details = await _publish_refusal(c, "other", "https://hooks.example.com/x")
    assert details.endswith("host hooks.example.com is not in CDP_CAMPAIGN_WEBHOOK_ALLOWED_HOSTS")
    await c.journey("crm", _hook(webhooks.url("crm")))
    person = new_person()
    await c.track(person, "Joined")
    await eventually(lambda: c.deliveries("crm", status="sent"), what="the allowed call")
    assert [v["body"] for v in webhooks.delivered.values()] == [{"person": person}]


async def test_a_provider_s_retry_after_is_honoured(start_campaign, webhooks):
    """A 429 with Retry-After: 600 is tried again after 600 s (up to 10 % later), not after the
    60 s backoff (CDP_CAMPAIGN_RETRY_BACKOFF_SECONDS=60,120 in these tests)."""
    c = await start_campaign(real=False, CDP_CAMPAIGN_WEBHOOK_ALLOWED_HOSTS="127.0.0.1")
    webhooks.fail_first["/crm"], webhooks.fail_status, webhooks.retry_after = 1, 429, "600"
    await c.journey("crm", _hook(webhooks.url("crm")))
    await c.track(new_person(), "Joined")
    await eventually(lambda: c.deliveries("crm"), what="the delivery")
    await c.tick()
    (delivery,) = await c.deliveries("crm")
    assert (delivery.status, delivery.attempts) == ("pending", 1) and delivery.reason.startswith("HTTP 429")
    wait = delivery.next_attempt_time.ToDatetime().replace(tzinfo=c.clock.now().tzinfo) - c.clock.now()
    assert timedelta(seconds=600) <= wait <= timedelta(seconds=660)
    c.clock.advance(timedelta(seconds=120))  # past every backoff step: still waiting for the provider
    await c.tick()
    assert sum(webhooks.posts.values()) == 1
    c.clock.advance(wait - timedelta(seconds=120))
    await c.tick()
    (delivery,) = await c.deliveries("crm")
    assert (delivery.status, delivery.attempts) == ("sent", 2) and sum(webhooks.posts.values()) == 2
