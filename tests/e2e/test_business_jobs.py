"""The business jobs of the design brief end to end, on the running suite: every component a real
process, events in through the gateway in the Segment tracking-API shape, reads and set-up through
the gateway's HTTP JSON API, messages out through campaign's dev sink (what ``make up`` uses).

- The flagship: one customer seen at the POS by phone and in the mini-program becomes one person
  (OneID); a second order tags them ``repurchase`` and upgrades their tier in the same step (the
  live 360 profile); a segment on that tag admits them (live audiences); the tier upgrade sends
  the "become a brand friend" invitation exactly once (journeys); Customer 360 shows it all.
- An identity merge moves profile data, segment memberships and journey enrolments to the
  survivor; the unmerge gives each side back its own.
"""

from __future__ import annotations

import asyncio

import aiohttp
import nats
import pytest

from cdp.events.v1 import events_pb2
from cdpkit.bus import PROFILE, BusNames

from .shop import Shop, eventually

pytestmark = pytest.mark.e2e

PHONE = "13912345678"
OPENID = "oMini2026Lin"


def order(order_id: str, total: int, **context) -> dict:
    return {
        "type": "track",
        "event": "Order Completed",
        "properties": {
            "order_id": order_id,
            "total": total,
            "currency": "CNY",
            "products": [{"product_id": "POLE-1", "sku": "POLE-1", "category": "outdoor/poles", "price": total}],
        },
        "context": context,
    }


async def test_flagship_pos_and_mini_program_one_person_repurchase_tier_segment_invitation_and_360(
    running_stack, nats_url, bus_prefix
):
    s = running_stack
    nc = await nats.connect(nats_url)
    announcements = await nc.subscribe(BusNames(bus_prefix, 4).subject(PROFILE, "*"))
    async with aiohttp.ClientSession(base_url=s.base_url) as http:
        shop = Shop(s, http)
        # The shop's set-up: a tier programme (silver from 500 CNY spent), the default tag rule
        # (repurchase when order_count >= 2), a segment, the ready-made invitation journey.
        await shop.profile_settings(tiers={"by": "total_spent_minor", "levels": [{"name": "silver", "min": 50000}]})
        await shop.segment("repurchasers", 'tags contains "repurchase"')
        await shop.no_quiet_hours()
        await shop.journey("brand-friend", await shop.library_journey("brand-friend-invitation"))

        # At the POS, the cashier takes the phone number (free text); later the mini-program
        # identifies the same phone with the WeChat openid.
        await shop.send(
            {
                "type": "identify",
                "anonymousId": "pos-receipt-8841",
                "traits": {"phone": "139 1234 5678", "first_name": "Lin"},
                "context": {"channel": "pos", "store_id": "SH-001"},
            }
        )
        person = await shop.person_id("phone", f"+86{PHONE}")
        await shop.send(
            {
                "type": "identify",
                "anonymousId": "mp-device-77",
                "traits": {"phone": PHONE, "wechat_openid": OPENID, "wechat_app_id": "wx-shop"},
                "context": {"channel": "mini_program"},
            }
        )
        assert await shop.person_id("wechat_openid", f"wx-shop:{OPENID}") == person  # one person
        await shop.profile_is(person, lambda p: p.get("traits", {}).get("wechat_openid") == OPENID, "the openid trait")
        await shop.grant(person, "wechat")

        # First order at the POS, second in the mini-program.
        await shop.send({**order("pos-1", 300), "anonymousId": "pos-receipt-8842", "context": {
            "traits": {"phone": PHONE}, "channel": "pos", "store_id": "SH-001"}})  # fmt: skip
        await shop.profile_is(person, lambda p: p.get("computed", {}).get("order_count") == 1, "the first order")
        assert not await shop.is_member("repurchasers", person)
        second = {**order("mp-1", 300, channel="mini_program"), "anonymousId": "mp-device-77", "messageId": "mp-o-1"}
        await shop.send(second)
        profile = await shop.profile_is(person, lambda p: p.get("tier") == "silver", "the tier upgrade")
        assert "repurchase" in {t["tag"] for t in profile["tags"]}
        assert profile["computed"]["order_count"] == 2 and profile["computed"]["favourite_channel"]

        # Profile announced the tag and the upgrade in the same step (one ProfileChanged).
        async def both_in_one():
            while True:
                change = events_pb2.ProfileChanged.FromString((await announcements.next_msg(timeout=10)).data)
                kinds = {(t.kind, t.to_value, t.direction) for t in change.transitions}
                if {("tag_added", "repurchase", ""), ("tier", "silver", "upgrade")} <= kinds:
                    return change

        change = await asyncio.wait_for(both_in_one(), timeout=20)
        assert change.person_id == person and change.trigger_event == "Order Completed"

        # The segment admits them; the journey sends the invitation on WeChat, once.
        await eventually(lambda: shop.is_member("repurchasers", person), what="the segment entry")
        await eventually(lambda: len(shop.sink()) == 1, what="the invitation")
        (message,) = shop.sink()
        assert (message["person_id"], message["channel"], message["to"]) == (person, "wechat", OPENID)
        assert message["journey_id"] == "brand-friend" and message["template_id"] == "brand-friend-invitation"
        assert message["body"] == "Congratulations on reaching silver! Join our brand friends for early access."
        tagged = await shop.profile_is(
            person, lambda p: "brand-friend-invited" in {t["tag"] for t in p["tags"]}, "the journey's tag"
        )
        assert {t["tag"]: t["source"] for t in tagged["tags"]}["brand-friend-invited"] == "journey:brand-friend"

        # Exactly once: the SDK retries the second order, a third order changes no tier.
        await shop.send(second)
        await shop.send({**order("mp-2", 100), "anonymousId": "mp-device-77"})
        await shop.profile_is(person, lambda p: p["computed"]["order_count"] == 3, "the third order")
        await asyncio.sleep(1.5)
        assert len(shop.sink()) == 1

        # Customer 360: profile, identities, segment membership and the message, in one answer.
        view = await shop.api("GET", f"persons/{person}/customer360")
        assert view["complete"] is True
        assert view["profile"]["tier"] == "silver" and view["profile"]["computed"]["order_count"] == 3
        identifiers = {(i["type"], i["value"]) for i in view["person"]["identifiers"]}
        assert {("phone", f"+86{PHONE}"), ("wechat_openid", f"wx-shop:{OPENID}")} <= identifiers
        assert [m["segment"] for m in view["segmentMemberships"]] == ["workspaces/demo/segments/repurchasers"]
        (sent,) = view["recentMessages"]
        assert (sent["journey"], sent["channel"], sent["state"]) == (
            "workspaces/demo/journeys/brand-friend",
            "wechat",
            "sent",
        )
    await nc.close()


async def test_merge_moves_profile_memberships_and_enrolments_and_unmerge_gives_them_back(running_stack):
    s = running_stack
    async with aiohttp.ClientSession(base_url=s.base_url) as http:
        shop = Shop(s, http)
        await shop.segment("has-email", "traits.email exists")
        await shop.segment("has-phone", "traits.phone exists")
        await shop.journey(
            "hello",
            {"trigger": {"event": {"name": "Signed Up"}}, "steps": [{"id": "settle", "wait": {"duration": "7d"}}]},
        )
        # The same shopper, twice: by e-mail on the web, by phone in the mini-program.
        await shop.send(
            {"type": "identify", "userId": "u-mei", "traits": {"email": "mei@shop.io"}},
            {"type": "track", "event": "Signed Up", "userId": "u-mei"},
        )
        web = await shop.person_id("user_id", "u-mei")
        await shop.send(
            {"type": "identify", "anonymousId": "mp-mei", "traits": {"phone": "13912340000"}},
            {"type": "track", "event": "Signed Up", "anonymousId": "mp-mei"},
        )
        mini = await shop.person_id("anonymous_id", "mp-mei")
        assert web != mini
        for person, segment in ((web, "has-email"), (mini, "has-phone")):
            await eventually(lambda p=person, g=segment: _memberships_are(shop, p, {g}), what="the first memberships")
            await eventually(lambda p=person: _instances_are(shop, {p: 1}, p), what="the first enrolments")

        # Seen together: identity merges them (the older person survives).
        await shop.send(
            {
                "type": "track",
                "event": "Product Viewed",
                "userId": "u-mei",
                "context": {"traits": {"phone": "13912340000"}},
            }
        )
        await eventually(lambda: _lookup_is(shop, "anonymous_id", "mp-mei", web), what="the merge")
        # The merge and the event that caused it reach profile on different subjects, in either
        # order: wait for both (the mini-program's two events and the web's three).
        await shop.profile_is(
            web,
            lambda p: {"email", "phone"} <= set(p.get("traits", {})) and p.get("computed", {}).get("event_count") == 5,
            "both traits and all five events",
        )
        assert (await shop.profile(mini))["personId"] == web  # the merged-away id answers for the survivor
        await eventually(
            lambda: _memberships_are(shop, web, {"has-email", "has-phone"}), what="the survivor's segments"
        )
        # One person runs the journey once (after_exit): the merged-away enrolment pauses ("merged").
        await eventually(lambda: _instances_are(shop, {web: 1}), what="one enrolment running for the survivor")

        # The unmerge: each side gets back its own identifiers, events, traits, segments, journeys.
        (merge,) = (await shop.api("GET", "merges", personId=web))["merges"]
        await shop.api("POST", f"merges/{merge['mergeId']}:unmerge", {"reason": "two people after all"})
        await eventually(lambda: _lookup_is(shop, "anonymous_id", "mp-mei", mini), what="the split")
        await shop.profile_is(mini, lambda p: p["personId"] == mini and "phone" in p.get("traits", {}), "mini again")
        await shop.profile_is(web, lambda p: "phone" not in p.get("traits", {}), "web without the phone")
        await eventually(lambda: _memberships_are(shop, mini, {"has-phone"}), what="mini's segment back")
        await eventually(lambda: _memberships_are(shop, web, {"has-email"}), what="web's segment left")
        await eventually(lambda: _instances_are(shop, {web: 1, mini: 1}), what="the enrolment running again for mini")


async def _lookup_is(shop: Shop, kind: str, value: str, expected: str) -> bool:
    status, body = await shop.try_api("GET", "persons:lookup", identifierType=kind, identifierValue=value)
    return status == 200 and body["personId"] == expected


async def _memberships_are(shop: Shop, person: str, expected: set[str]) -> bool:
    answered_for, segments = await shop.memberships(person)
    return answered_for in ("", person) and segments == expected


async def _instances_are(shop: Shop, expected: dict[str, int], person: str = "") -> bool:
    """The running instances per person."""
    instances = await shop.instances("hello", person)
    counts: dict[str, int] = {}
    for instance in instances:
        if instance["state"] == "active":
            counts[instance["personId"]] = counts.get(instance["personId"], 0) + 1
    return counts == expected
