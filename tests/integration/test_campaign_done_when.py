"""Issue 6's (campaign's) "done when", in one process on real PostgreSQL, NATS, gRPC and SMTP
with a ManualClock, against the REAL profile and segment services (campaign_harness.py):
recipients, consent and the workspace time zone come from profile (identify, UpdateConsent,
Unsubscribe, settings), events reach journeys through profile's announcements. Cart abandonment
end to end, quiet hours, caps, consent, A/B and the uplift."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

from cdp.campaign.v1 import campaign_pb2
from cdp.events.v1 import events_pb2
from cdp.profile.v1 import profile_pb2
from cdp_campaign.domain import assign_variant
from cdp_campaign.service import library
from cdpkit.bus import CAMPAIGN

from .campaign_harness import WS, eventually, len_is

CART = dict(library())["cart-abandonment"]["definition"]


async def _instance_states(c, journey_id):
    return {i.person_id: (i.state, i.exit_reason) for i in await c.instances(journey_id)}


async def state_of(c, journey_id, person, expected):
    return (await _instance_states(c, journey_id)).get(person) == expected


async def test_cart_abandonment_one_message_without_an_order_none_with_one(start_campaign, smtp):
    c = await start_campaign(**smtp.env())
    ann = await c.person(email="ann@example.com", first_name="Ann")
    bob = await c.person(email="bob@example.com")
    await c.journey("cart", CART)

    await c.track(ann, "Product Added", "m-ann-1", name="Trekking poles")
    # The same event again in another chunk (an upstream replay): profile stores it once.
    await c.track(ann, "Product Added", "m-ann-1", nats_id="replayed-chunk", name="Trekking poles")
    await c.track(bob, "Product Added", "m-bob-1", name="Rain jacket")
    await eventually(lambda: len_is(c.instances("cart"), 2), what="two instances")

    added_at = c.clock.now()
    await c.tick()  # the waits begin now: timeouts at added_at + 1 h exactly

    # At 59:59 Bob orders (his wait ends: no message); Ann has none yet.
    c.clock.advance(timedelta(minutes=59, seconds=59))
    await c.track(bob, "Order Completed", "m-bob-2", order_id="o-bob", total=59.9)
    await eventually(lambda: state_of(c, "cart", bob, ("exited", "exit_step")), what="bob's wait to end on his order")
    await c.tick()
    assert smtp.delivered == {} and await c.deliveries("cart") == []

    # 60:00 without an order: Ann's reminder, at the boundary.
    c.clock.advance(timedelta(seconds=1))
    await c.tick()
    await eventually(lambda: len(smtp.delivered) == 1, what="one e-mail")
    await asyncio.sleep(0.5)  # anything else in flight would show up now
    await c.tick()
    (reminder,) = await c.deliveries("cart")
    assert reminder.create_time.ToDatetime(UTC) == reminder.send_time.ToDatetime(UTC) == added_at + timedelta(hours=1)

    assert sum(smtp.transmissions.values()) == 1
    (message,) = smtp.delivered.values()
    assert message["to"] == ["ann@example.com"]  # the address is the real profile's (a sealed PII trait)
    assert message["subject"] == "You left Trekking poles in your cart"
    assert "Hi Ann" in message["body"]
    (delivery,) = await c.deliveries("cart")
    assert delivery.person_id == ann and delivery.status == "sent" and delivery.step_id == "reminder"
    assert await _instance_states(c, "cart") == {ann: ("completed", ""), bob: ("exited", "exit_step")}
    # Bob's order inside the window is the journey's conversion, worth what profile counts.
    report = await c.stub.GetJourneyReport(
        campaign_pb2.GetJourneyReportRequest(name=f"workspaces/{WS}/journeys/cart/report")
    )
    bob_profile = await c.get_profile(bob)
    assert report.rows[0].converted == 1
    assert report.rows[0].revenue_minor == bob_profile.computed["total_spent_minor"] == 5990


async def test_an_order_right_after_the_product_was_added_ends_the_wait_before_it_began(start_campaign, smtp):
    c = await start_campaign(**smtp.env())
    cy = await c.person(email="cy@example.com")
    await c.journey("cart", CART)
    # Back to back: both events usually land in one announcement, before the scheduler has
    # started the wait; the order must still end it.
    await c.track(cy, "Product Added", name="Boots")
    await c.track(cy, "Order Completed", order_id="o-cy", total=99)
    await eventually(lambda: state_of(c, "cart", cy, ("exited", "exit_step")), what="the order to end the wait")
    c.clock.advance(timedelta(minutes=61))
    await c.tick()
    assert smtp.delivered == {} and await c.deliveries("cart") == []


SIGN_UP_MAIL = {
    "trigger": {"event": {"name": "Signed Up"}},
    "steps": [{"id": "hello", "send": {"channel": "email", "template": {"subject": "Hi", "body": "Welcome"}}}],
}


async def test_quiet_hours_defer_to_the_next_allowed_time(start_campaign, smtp):
    c = await start_campaign(**smtp.env())
    c.clock.set(datetime(2026, 6, 18, 14, 0, tzinfo=UTC))  # 22:00 in Shanghai, 15:00 in London
    sh = await c.person(email="sh@example.com")
    ldn = await c.person(email="ldn@example.com", time_zone="Europe/London")
    await c.journey("welcome", SIGN_UP_MAIL)
    await c.track(sh, "Signed Up")
    await c.track(ldn, "Signed Up")
    await eventually(lambda: len_is(c.deliveries("welcome"), 2), what="two deliveries")
    await c.tick()

    by_person = {d.person_id: d for d in await c.deliveries("welcome")}
    assert by_person[ldn].status == "sent"  # not night in London (the person's time zone trait)
    deferred = by_person[sh]
    assert deferred.status == "pending" and deferred.deferrals == 1 and deferred.reason == "quiet_hours"
    # Deferred, not dropped: to 09:00 the next morning in Shanghai, the workspace time zone.
    assert deferred.next_attempt_time.ToDatetime(UTC) == datetime(2026, 6, 19, 1, 0, tzinfo=UTC)
    assert [m["to"] for m in smtp.delivered.values()] == [["ldn@example.com"]]

    c.clock.set(datetime(2026, 6, 19, 0, 59, tzinfo=UTC))
    await c.tick()
    assert len(smtp.delivered) == 1
    c.clock.set(datetime(2026, 6, 19, 1, 0, tzinfo=UTC))
    await c.tick()
    await eventually(lambda: len(smtp.delivered) == 2, what="the deferred e-mail at 09:00")
    assert {d.person_id: d.status for d in await c.deliveries("welcome")} == {sh: "sent", ldn: "sent"}

    # The workspace time zone is profile's (ProfileSettings.time_zone), the one source of truth:
    # moved to London, 22:00 Shanghai is 15:00 there and a message goes at once.
    await c.profile_settings(time_zone="Europe/London")
    settings = await c.stub.GetCampaignSettings(
        campaign_pb2.GetCampaignSettingsRequest(name=f"workspaces/{WS}/campaignSettings")
    )
    assert settings.time_zone == "Europe/London"
    c.clock.set(datetime(2026, 6, 19, 14, 0, tzinfo=UTC))
    late = await c.person(email="late@example.com")
    await c.track(late, "Signed Up")
    await eventually(lambda: len_is(c.deliveries("welcome"), 3), what="a third delivery")
    await c.tick()
    assert {d.person_id: d.status for d in await c.deliveries("welcome")}[late] == "sent"


async def test_a_cap_suppresses_with_its_reason(start_campaign, smtp):
    c = await start_campaign(**smtp.env())
    await c.stub.UpdateCampaignSettings(
        campaign_pb2.UpdateCampaignSettingsRequest(
            settings=campaign_pb2.CampaignSettings(
                name=f"workspaces/{WS}/campaignSettings", caps=campaign_pb2.FrequencyCaps(per_day=2)
            ),
            update_mask={"paths": ["caps"]},
        )
    )
    one = await c.person(email="one@example.com")
    two_mails = {
        "trigger": {"event": {"name": "Signed Up"}},
        "caps": {"per_day": 1},
        "steps": [
            {"id": "first", "send": {"channel": "email", "template": {"subject": "1", "body": "one"}}},
            {"id": "second", "send": {"channel": "email", "template": {"subject": "2", "body": "two"}}},
        ],
    }
    await c.journey("twice", two_mails)
    await c.journey("other", SIGN_UP_MAIL)
    await c.track(one, "Signed Up")
    await eventually(lambda: len_is(c.deliveries(), 3), what="three deliveries")
    await c.tick()

    statuses = {(d.name.split("/")[3], d.step_id): (d.status, d.reason) for d in await c.deliveries()}
    # The journey's own cap (1 a day) stops its second message; the workspace cap (2 a day) lets
    # the other journey's through, and would stop a third.
    assert sorted(statuses.values()) == [("sent", ""), ("sent", ""), ("suppressed", "cap_journey_day")]
    assert len(smtp.delivered) == 2
    report = await c.stub.GetJourneyReport(
        campaign_pb2.GetJourneyReportRequest(name=f"workspaces/{WS}/journeys/twice/report")
    )
    overall = report.rows[0]
    assert (overall.step_id, overall.sent, overall.suppressed) == ("", 1, 1)
    assert dict(overall.suppressed_by_reason) == {"cap_journey_day": 1}

    await c.journey("third", {**SIGN_UP_MAIL, "trigger": {"event": {"name": "Came Back"}}})
    await c.track(one, "Came Back")
    await eventually(lambda: len_is(c.deliveries("third"), 1), what="a third journey's delivery")
    await c.tick()
    (third,) = await c.deliveries("third")
    assert (third.status, third.reason) == ("suppressed", "cap_workspace_day")

    # The person's messages over every journey, newest first, in pages (Customer 360 reads them).
    first = await c.stub.ListPersonMessages(
        campaign_pb2.ListPersonMessagesRequest(parent=f"workspaces/{WS}/persons/{one}", page_size=3)
    )
    rest = await c.stub.ListPersonMessages(
        campaign_pb2.ListPersonMessagesRequest(
            parent=f"workspaces/{WS}/persons/{one}", page_size=3, page_token=first.next_page_token
        )
    )
    messages = [*first.messages, *rest.messages]
    assert len(first.messages) == 3 and len(rest.messages) == 1 and not rest.next_page_token
    assert messages[0].journey == f"workspaces/{WS}/journeys/third" and messages[0].state == "suppressed"
    assert messages[0].attributes["reason"] == "cap_workspace_day" and not messages[0].HasField("send_time")
    assert sorted(m.state for m in messages) == ["sent", "sent", "suppressed", "suppressed"]
    assert all(m.send_time.seconds for m in messages if m.state == "sent")


async def test_weekly_caps_are_rolling_seven_days_across_the_local_week_boundary(start_campaign, smtp):
    """Per-week caps end to end: workspace-wide (2 a week) and per journey (1 a week), over a
    Sunday -> Monday in the workspace time zone (Asia/Shanghai): a new calendar week frees
    nothing; a message leaves the count exactly 7 days after it was sent."""
    c = await start_campaign(**smtp.env())
    await c.stub.UpdateCampaignSettings(
        campaign_pb2.UpdateCampaignSettingsRequest(
            settings=campaign_pb2.CampaignSettings(
                name=f"workspaces/{WS}/campaignSettings", caps=campaign_pb2.FrequencyCaps(per_week=2)
            ),
            update_mask={"paths": ["caps"]},
        )
    )
    person = await c.person(email="weekly@example.com")

    def mail(event: str, **extra) -> dict:
        send = {"channel": "email", "template": {"subject": event, "body": "."}}
        return {"trigger": {"event": {"name": event}}, "reentry": {"mode": "always"}, **extra,
                "steps": [{"id": "m", "send": send}]}  # fmt: skip

    await c.journey("promo", mail("Promo", caps={"per_week": 1}))
    await c.journey("news", mail("News"))

    async def outcome(event: str, at: datetime) -> tuple[str, str]:
        c.clock.set(at)
        journey = event.lower()
        before = len(await c.deliveries(journey))
        await c.track(person, event)
        await eventually(lambda: len_is(c.deliveries(journey), before + 1), what=f"the {event} delivery")
        await c.tick()
        newest = max(await c.deliveries(journey), key=lambda d: d.create_time.ToDatetime())
        return newest.status, newest.reason

    saturday = datetime(2026, 6, 20, 2, 0, tzinfo=UTC)  # Saturday 10:00 in Shanghai
    monday = datetime(2026, 6, 22, 2, 0, tzinfo=UTC)  # Monday 10:00: a new week there
    week = timedelta(days=7)
    assert await outcome("Promo", saturday) == ("sent", "")
    assert await outcome("Promo", saturday + timedelta(hours=2)) == ("suppressed", "cap_journey_week")
    assert await outcome("News", saturday + timedelta(hours=2)) == ("sent", "")
    # Monday: both caps still count Saturday's messages (rolling, not calendar weeks).
    assert await outcome("News", monday) == ("suppressed", "cap_workspace_week")
    assert await outcome("Promo", monday) == ("suppressed", "cap_workspace_week")
    # One second short of 7 days after Saturday's promo: still two in the window.
    assert await outcome("Promo", saturday + week - timedelta(seconds=1)) == ("suppressed", "cap_workspace_week")
    # Exactly 7 days after it: the promo left both windows (the news of 12:00 still counts, 1 < 2).
    assert await outcome("Promo", saturday + week) == ("sent", "")
    assert await outcome("News", saturday + week + timedelta(hours=1)) == ("suppressed", "cap_workspace_week")
    assert await outcome("News", saturday + week + timedelta(hours=2)) == ("sent", "")
    assert sorted(m["subject"] for m in smtp.delivered.values()) == ["News", "News", "Promo", "Promo"]


async def test_consent_withdrawn_between_trigger_and_send_suppresses(start_campaign, smtp):
    c = await start_campaign(**smtp.env())
    one = await c.person(email="one@example.com")
    two = await c.person(email="two@example.com")
    never_asked = await c.person(consents=(), email="three@example.com")
    later = {
        "trigger": {"event": {"name": "Signed Up"}},
        "reentry": {"mode": "always"},
        "steps": [
            {"id": "pause", "wait": {"duration": "10m"}},
            {"id": "hello", "send": {"channel": "email", "template": {"subject": "Hi", "body": "Welcome"}}},
        ],
    }
    await c.journey("later", later)
    sub = await c.js.subscribe(c.names.subject(CAMPAIGN, ">"))
    for person in (one, two, never_asked):
        await c.track(person, "Signed Up")
    await eventually(lambda: len_is(c.instances("later"), 3), what="enrolments")
    await c.tick()
    # Between the trigger and the send: the unsubscribe link, through profile's real API.
    await c.profile.Unsubscribe(profile_pb2.UnsubscribeRequest(name=f"workspaces/{WS}/profiles/{one}", channel="email"))
    c.clock.advance(timedelta(minutes=10))
    await c.tick()
    await eventually(lambda: len_is(c.deliveries("later"), 3), what="deliveries")
    await c.tick()

    statuses = {d.person_id: (d.status, d.reason) for d in await c.deliveries("later")}
    assert statuses == {
        one: ("suppressed", "unsubscribed"),
        two: ("sent", ""),
        never_asked: ("suppressed", "no_consent"),  # opt_in (the default) needs a grant
    }
    assert [m["to"] for m in smtp.delivered.values()] == [["two@example.com"]]
    # Both outcomes are announced through the outbox on {prefix}.campaign.message_*.
    seen = {}
    while len(seen) < 3:
        msg = await sub.next_msg(timeout=10)
        event = events_pb2.CampaignMessage.FromString(msg.data)
        seen[event.person_id] = (msg.subject.rsplit(".", 1)[1], event.status, event.reason)
    assert seen[one] == ("message_suppressed", "suppressed", "unsubscribed")
    assert seen[two] == ("message_sent", "sent", "")

    # Opting in again for marketing after the unsubscribe: profile keeps both statements, the
    # newer one decides, and the next message goes.
    c.clock.advance(timedelta(minutes=1))
    await c.consent(one, "email", True, purpose="marketing")
    await c.track(one, "Signed Up")
    await eventually(lambda: len_is(c.instances("later"), 4), what="the second enrolment")
    await c.tick()
    c.clock.advance(timedelta(minutes=10))
    await c.tick()
    await eventually(lambda: len(smtp.delivered) == 2, what="the e-mail after opting in again")
    assert sorted(m["to"][0] for m in smtp.delivered.values()) == ["one@example.com", "two@example.com"]


SPLIT = {
    "trigger": {"event": {"name": "Joined"}},
    "goal": {"event": "Order Completed", "within": "7d"},
    "steps": [
        {
            "id": "ab",
            "split": {
                "variants": [
                    {"name": "a", "weight": 45, "next": "mail-a"},
                    {"name": "b", "weight": 45, "next": "mail-b"},
                    {"name": "control", "weight": 10, "holdout": True},
                ]
            },
        },
        {"id": "mail-a", "next": "end", "send": {"channel": "email", "template": {"subject": "A", "body": "a"}}},
        {"id": "mail-b", "send": {"channel": "email", "template": {"subject": "B", "body": "b"}}},
        {"id": "end", "exit": {}},
    ],
}


async def test_ab_assignment_is_stable_and_the_reported_uplift_matches_a_hand_computation(start_campaign):
    c = await start_campaign()  # e-mail through the dev sink
    # 300 real profiles; consent in opt_out mode (only a withdrawal stops a message).
    await c.stub.UpdateCampaignSettings(
        campaign_pb2.UpdateCampaignSettingsRequest(
            settings=campaign_pb2.CampaignSettings(name=f"workspaces/{WS}/campaignSettings", consent_mode="opt_out"),
            update_mask={"paths": ["consent_mode"]},
        )
    )
    persons = await c.people([f"p-{n:03d}@example.com" for n in range(300)])
    await c.journey("ab", SPLIT)
    for person in persons:
        await c.track(person, "Joined")
    await eventually(lambda: len_is(c.instances("ab"), 300), what="300 enrolments", timeout=60)
    await c.tick()
    assigned = {i.person_id: i.variant for i in await c.instances("ab")}
    # Stable: what the journey chose is the pure function of (journey, step, person).
    weights = [("a", 45), ("b", 45), ("control", 10)]
    assert assigned == {p: assign_variant("ab", "ab", p, weights) for p in persons}
    counts = {v: sum(1 for a in assigned.values() if a == v) for v, _ in weights}
    assert 100 <= counts["a"] <= 170 and 100 <= counts["b"] <= 170 and 10 <= counts["control"] <= 50, counts

    # Conversions: every 3rd person of a, every 4th of b, every 6th of control; 12.34 each.
    groups = {v: sorted(p for p in persons if assigned[p] == v) for v in ("a", "b", "control")}
    converting = [*groups["a"][::3], *groups["b"][::4], *groups["control"][::6]]
    for n, person in enumerate(converting):
        await c.track(person, "Order Completed", order_id=f"o-{n}", total=12.34)
    report = None

    async def converted():
        nonlocal report
        report = await c.stub.GetJourneyReport(
            campaign_pb2.GetJourneyReportRequest(name=f"workspaces/{WS}/journeys/ab/report", format="csv")
        )
        return report.rows[0].converted == len(converting)

    await eventually(converted, what="conversions", timeout=60)
    overall = report.rows[0]
    assert overall.revenue_minor == 1234 * len(converting)
    by_variant = {r.variant: r for r in report.rows if not r.step_id and r.variant}
    for variant, members in groups.items():
        assert by_variant[variant].entered == len(members)
        assert by_variant[variant].converted == len(members[:: {"a": 3, "b": 4, "control": 6}[variant]])

    # The uplift by hand: difference of conversion rates, Newcombe's 95% interval from the
    # groups' Wilson intervals.
    def wilson(x, n, z=1.959964):
        p = x / n
        centre, half = (p + z * z / (2 * n)), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return p, (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)

    n_c, x_c = len(groups["control"]), len(groups["control"][::6])
    for uplift in report.uplifts:
        n_v = len(groups[uplift.variant])
        x_v = len(groups[uplift.variant][:: {"a": 3, "b": 4}[uplift.variant]])
        (p_v, l_v, u_v), (p_c, l_c, u_c) = wilson(x_v, n_v), wilson(x_c, n_c)
        assert uplift.control == "control"
        assert math.isclose(uplift.uplift, p_v - p_c, abs_tol=1e-12)
        assert math.isclose(uplift.ci_low, p_v - p_c - math.hypot(p_v - l_v, u_c - p_c), abs_tol=1e-6)
        assert math.isclose(uplift.ci_high, p_v - p_c + math.hypot(u_v - p_v, p_c - l_c), abs_tol=1e-6)
    assert {u.variant for u in report.uplifts} == {"a", "b"}
    # The control group got nothing; the others one message each; the CSV carries the same rows.
    sent_by_variant = {r.variant: r.sent for r in report.rows if not r.step_id and r.variant}
    assert sent_by_variant == {"a": len(groups["a"]), "b": len(groups["b"]), "control": 0}
    header, *lines = report.csv.splitlines()
    assert header.startswith("step_id,variant,entered,sent") and len(lines) == len(report.rows)
