"""The sender against real SMTP servers (aiosmtpd) with the real profile: one bad message fails
alone, the rest of its batch goes exactly once; a crash re-sends only what was in flight; a
message being sent counts toward the caps of other senders."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from datetime import timedelta
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller
from google.protobuf import field_mask_pb2

from cdp.campaign.v1 import campaign_pb2
from cdp_campaign.delivery import RESENT, Sender
from cdp_devstack.infra import free_port
from tests.e2e.delivery_receivers import smtp_env

from .campaign_harness import WS, eventually


async def _count(coro, n):
    return len(await coro) == n


async def test_a_bad_message_fails_alone_and_the_rest_of_its_batch_goes_once(start_campaign, smtp):
    c = await start_campaign(**smtp.env())
    good = await c.person(email="good@example.com", first_name="Ann", age=30)
    # A trait that would inject a header, and one that breaks the template at run time.
    injected = await c.person(email="inj@example.com", first_name="Bo\nBcc: x@evil.example", age=41)
    broken = await c.person(email="broken@example.com", first_name="Cy", age="30")
    journey = {
        "trigger": {"event": {"name": "Signed Up"}},
        "steps": [
            {
                "id": "hello",
                "send": {
                    "channel": "email",
                    "template": {
                        "subject": "Hi {{ traits.first_name }}",
                        "body": "{{ traits.age + 1 }} in{{ traits.address.city }}",
                    },
                },
            }
        ],
    }
    await c.journey("hello", journey)
    # Templates that would take the sender's CPU or memory (they publish: the limits hold at send).
    loop = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    heavy = {
        "trigger": {"event": {"name": "Signed Up"}},
        "steps": [
            {"id": "cpu", "send": {"channel": "email", "template": {"subject": "s", "body": loop}}},
            {"id": "memory", "send": {"channel": "email", "template": {"subject": "s", "body": "{{ 'x' * 10**8 }}"}}},
        ],
    }
    await c.journey("heavy", heavy)
    for person in (good, injected, broken):
        await c.track(person, "Signed Up")
    await eventually(lambda: _count(c.deliveries("hello"), 3), what="three deliveries")
    await eventually(lambda: _count(c.deliveries("heavy"), 6), what="the heavy ones")
    await c.tick()
    by_person = {d.person_id: d for d in await c.deliveries("hello")}
    assert by_person[good].status == "sent" and by_person[injected].status == "sent"
    assert by_person[broken].status == "failed"
    assert by_person[broken].reason.startswith("template_error: TypeError")
    heavy_reasons = {(d.step_id, d.status, d.reason) for d in await c.deliveries("heavy")}
    assert heavy_reasons == {
        ("cpu", "failed", "template_error: rendering took over 0.5s"),
        ("memory", "failed", "template_error: a repetition longer than 262144"),
    }
    c.clock.advance(timedelta(minutes=10))
    await c.tick()
    # Each message reached the SMTP server once; the line break became a space, not a header.
    assert sorted(smtp.transmissions.values()) == [1, 1]
    mails = {m["subject"]: (m["to"], m["body"].strip()) for m in smtp.delivered.values()}
    # A missing attribute at any depth (nobody has an address) renders empty.
    assert mails == {
        "Hi Ann": (["good@example.com"], "31.0 in"),
        "Hi Bo Bcc: x@evil.example": (["inj@example.com"], "42.0 in"),
    }


class _CountingSmtp:
    """A plain relay: it delivers every transmission (no de-duplication by Message-ID) and counts
    them per Message-ID, and the sessions (EHLOs); messages to ``slow`` recipients are answered
    after ``delay`` seconds (``at_slow`` is set while one is there)."""

    def __init__(self, slow: set[str], delay: float = 2.0) -> None:
        self.slow, self.delay = slow, delay
        self.transmissions: Counter[str] = Counter()
        self.to: dict[str, str] = {}
        self.sessions = 0
        self.at_slow = threading.Event()  # set in the server's thread
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):
        key = message_from_bytes(envelope.content)["Message-ID"]
        self.transmissions[key] += 1
        self.to[key] = envelope.rcpt_tos[0]
        if self.slow & set(envelope.rcpt_tos):
            self.at_slow.set()
            await asyncio.sleep(self.delay)
        return "250 accepted"

    def sent_to(self, address: str) -> int:
        return sum(n for key, n in self.transmissions.items() if self.to[key] == address)

    def env(self) -> dict[str, str]:
        return smtp_env(self.port)


@pytest.fixture
def relay():
    server = _CountingSmtp({"slow@example.com"})
    server._controller.start()
    yield server
    server._controller.stop()


def _stop_sender_worker(c) -> None:
    """The tests drive the sender by hand."""
    (worker,) = [w for w in c.runtime.workers if getattr(w, "name", "") == "campaign-sender"]
    worker.stop()


def _mail(event: str) -> dict:
    return {
        "trigger": {"event": {"name": event}},
        "steps": [{"id": "m", "send": {"channel": "email", "template": {"subject": "s", "body": "b"}}}],
    }


async def test_a_crash_mid_batch_sends_again_only_the_message_in_flight(start_campaign, relay):
    c = await start_campaign(**relay.env())
    _stop_sender_worker(c)
    people = {
        address: await c.person(email=address) for address in ("a@example.com", "b@example.com", "slow@example.com")
    }
    await c.journey("hello", _mail("Joined"))
    for person in people.values():
        await c.track(person, "Joined")
    await eventually(lambda: _count(c.deliveries("hello"), 3), what="three deliveries")
    resent_before = RESENT.labels("email")._value.get()
    batch = asyncio.create_task(c.runtime.sender.run_once())
    # The batch's e-mails go one after another over one connection: those before the slow one
    # were answered and recorded, those after it not started.
    await eventually(relay.at_slow.is_set, what="the slow message at the server")
    marked = await c.runtime.pool.fetch(
        "SELECT delivery_id FROM deliveries WHERE transmitted_at IS NOT NULL AND status = 'pending'"
    )
    assert len(marked) == 1, "only the message at the server is marked as being transmitted"
    batch.cancel()  # the process dies while that message is at the SMTP server
    with pytest.raises(asyncio.CancelledError):
        await batch
    await asyncio.sleep(relay.delay)
    c.clock.advance(timedelta(seconds=31))  # the dead sender's claim (CDP_CAMPAIGN_CLAIM_SECONDS) ran out
    await c.tick()
    assert {d.status for d in await c.deliveries("hello")} == {"sent"}
    # At a relay that does not de-duplicate: the messages already answered went once, those not
    # started went once (after the crash); only the one in flight at the crash went again (with
    # the same Message-ID), and the sender counted exactly that one as a re-send.
    assert [relay.sent_to(a) for a in ("a@example.com", "b@example.com", "slow@example.com")] == [1, 1, 2]
    assert RESENT.labels("email")._value.get() - resent_before == 1
    # One SMTP session per send batch: the one that crashed and the one after it.
    assert relay.sessions == 2


async def test_a_message_being_sent_counts_toward_caps_of_other_senders(start_campaign, relay):
    c = await start_campaign(**relay.env())
    _stop_sender_worker(c)
    await c.stub.UpdateCampaignSettings(
        campaign_pb2.UpdateCampaignSettingsRequest(
            settings=campaign_pb2.CampaignSettings(
                name=f"workspaces/{WS}/campaignSettings", caps=campaign_pb2.FrequencyCaps(per_day=1)
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["caps.per_day"]),
        )
    )
    person = await c.person(email="slow@example.com")
    await c.journey("one", _mail("Joined"))
    await c.journey("two", _mail("Joined"))
    await c.track(person, "Joined")
    await eventually(lambda: _count(c.deliveries(), 2), what="two deliveries")
    s = c.runtime.sender
    senders = [
        Sender(
            s._pool, s._names, s._catalog, s._profile, s._providers, s._clock,
            facts=s._facts, batch=1, max_attempts=3, backoff=(60.0,), send_timeout=10.0,
        )
        for _ in range(2)
    ]  # fmt: skip

    async def later():
        await asyncio.sleep(0.5)  # while the first sender waits for the SMTP server
        return await senders[1].run_once()

    await asyncio.gather(senders[0].run_once(), later())
    statuses = sorted((d.status, d.reason) for d in await c.deliveries())
    assert statuses == [("sent", ""), ("suppressed", "cap_workspace_day")]
    assert relay.sent_to("slow@example.com") == 1


async def test_a_slow_smtp_server_never_outlasts_the_sender_s_claim(start_campaign):
    """E-mails of a batch go one after another: once the claim could run out before the next
    one is answered, the rest of the batch is released (no attempt used, no cap counted) and goes
    in the next batch, so no other sender can take over a message this one still sends."""
    relay = _CountingSmtp({"slow@example.com"}, delay=0.8)
    relay._controller.start()
    try:
        env = {"CDP_CAMPAIGN_SEND_TIMEOUT_SECONDS": "1", "CDP_CAMPAIGN_CALL_TIMEOUT_SECONDS": "1"}
        c = await start_campaign(**relay.env(), **env, CDP_CAMPAIGN_CLAIM_SECONDS="3.6")  # hand-overs for 0.6 s
        _stop_sender_worker(c)
        await c.journey("hello", _mail("Joined"))
        slow = await c.person(email="slow@example.com")
        await c.track(slow, "Joined")
        await eventually(lambda: _count(c.deliveries("hello"), 1), what="the slow one's delivery, due first")
        c.clock.advance(timedelta(seconds=1))
        for address in ("a@example.com", "b@example.com"):
            await c.track(await c.person(email=address), "Joined")
        await eventually(lambda: _count(c.deliveries("hello"), 3), what="three deliveries")
        assert await c.runtime.sender.run_once() == 3
        after_first = sorted((d.status, d.attempts) for d in await c.deliveries("hello"))
        assert after_first == [("pending", 0), ("pending", 0), ("sent", 1)]
        assert await c.runtime.sender.run_once() == 2
        assert {(d.status, d.attempts) for d in await c.deliveries("hello")} == {("sent", 1)}
        assert sorted(relay.transmissions.values()) == [1, 1, 1] and relay.sessions == 2
    finally:
        relay._controller.stop()
