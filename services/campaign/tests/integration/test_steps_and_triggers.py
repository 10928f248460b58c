"""Triggers, steps, providers and the API around them, in one process with a ManualClock on real
PostgreSQL, NATS and gRPC (profile and segment are contract doubles on a socket)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import yaml

from cdp.campaign.v1 import campaign_pb2
from cdp.events.v1 import events_pb2
from cdp_campaign.service import LIBRARY
from cdpkit.bus import IDENTITY, PROFILE, SEGMENT

from ..conftest import WS, eventually


async def count(coro, n):
    return len(await coro) == n


def sink_lines(tmp_path):
    path = tmp_path / "sink.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_publish_checks_templates_and_yaml_round_trips(start_campaign):
    c = await start_campaign()
    bad = {
        "trigger": {"segment": {"segment_id": "vip"}},
        "steps": [
            {"id": "hi", "send": {"channel": "email", "template": {"subject": "Hi", "body": "{{ coupon.code }}"}}}
        ],
    }
    draft = await c.journey("bad", bad, publish=False)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.stub.PublishJourney(campaign_pb2.PublishJourneyRequest(name=draft.name))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # No coupon step before the send, no event trigger: the variable cannot exist at send time.
    assert error.value.details().startswith(
        "journey.definition.steps[0].send.template.body: unknown variable(s) coupon"
    )
    assert (await c.stub.GetJourney(campaign_pb2.GetJourneyRequest(name=draft.name))).state == 1  # still a draft

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.journey("unknown-field", {"trigger": {"event": {"name": "X", "colour": "red"}}}, publish=False)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "colour" in error.value.details()

    # Every ready-made journey, created from its YAML form, exports to the same YAML.
    templates = await c.stub.ListJourneyTemplates(campaign_pb2.ListJourneyTemplatesRequest(parent=f"workspaces/{WS}"))
    assert {t.name.rsplit("/", 1)[1] for t in templates.templates} == {
        "welcome-series",
        "cart-abandonment",
        "win-back",
        "birthday",
        "points-expiry",
        "brand-friend-invitation",
        "post-promotion-nurture",
    }
    text = (LIBRARY / "win-back.yaml").read_text()

    definition_yaml = yaml.safe_dump(yaml.safe_load(text)["definition"])
    created = await c.stub.CreateJourney(
        campaign_pb2.CreateJourneyRequest(
            parent=f"workspaces/{WS}",
            journey_id="win-back",
            journey=campaign_pb2.Journey(display_name="Win-back"),
            definition_yaml=definition_yaml,
        )
    )
    exported = await c.stub.ExportJourney(campaign_pb2.ExportJourneyRequest(name=created.name, format="yaml"))
    assert yaml.safe_load(exported.content) == yaml.safe_load(definition_yaml)
    again = await c.stub.CreateJourney(
        campaign_pb2.CreateJourneyRequest(
            parent=f"workspaces/{WS}",
            journey_id="win-back-2",
            journey=campaign_pb2.Journey(display_name="Again"),
            definition_yaml=exported.content,
        )
    )
    assert again.definition == created.definition


async def test_coupons_one_per_person_per_campaign_and_redemption(start_campaign, doubles, tmp_path):
    c = await start_campaign()
    await c.stub.CreateCouponPool(
        campaign_pb2.CreateCouponPoolRequest(
            parent=f"workspaces/{WS}", coupon_pool_id="spring", coupon_pool=campaign_pb2.CouponPool(kind="imported")
        )
    )
    imported = await c.stub.ImportCouponCodes(
        campaign_pb2.ImportCouponCodesRequest(
            pool=f"workspaces/{WS}/couponPools/spring", codes=["SPRING-1", "SPRING-2"]
        )
    )
    assert (imported.imported, imported.skipped) == (2, 0)
    doubles.profile.put(WS, "p-1", traits={"email": "one@example.com"}, consents={"email": True})
    offer = {
        "trigger": {"event": {"name": "Visited"}},
        "reentry": {"mode": "always"},
        "steps": [
            {"id": "code", "coupon": {"pool_id": "spring"}},
            {"id": "mail", "send": {"channel": "email", "template": {"subject": "Gift", "body": "{{ coupon.code }}"}}},
        ],
    }
    await c.journey("offer", offer)
    await c.track("p-1", "Visited", "v-1")
    await c.track("p-1", "Visited", "v-2")  # enters again: same code
    await eventually(lambda: count(c.deliveries("offer"), 2), what="two deliveries")
    await c.tick()
    bodies = [line["body"] for line in sink_lines(tmp_path)]
    assert bodies == ["SPRING-1", "SPRING-1"]
    await c.track("p-1", "Coupon Redeemed", "r-1", coupon_code="SPRING-1")

    async def redeemed():
        pool = await c.stub.GetCouponPool(campaign_pb2.GetCouponPoolRequest(name=f"workspaces/{WS}/couponPools/spring"))
        return pool.redeemed_codes == 1 and pool.issued_codes == 1 and pool.total_codes == 2

    await eventually(redeemed, what="the redemption")
    report = await c.stub.GetJourneyReport(
        campaign_pb2.GetJourneyReportRequest(name=f"workspaces/{WS}/journeys/offer/report")
    )
    assert (report.coupons_issued, report.coupons_redeemed) == (1, 1)

    # A generated pool makes a code when it issues one.
    await c.stub.CreateCouponPool(
        campaign_pb2.CreateCouponPoolRequest(
            parent=f"workspaces/{WS}",
            coupon_pool_id="made",
            coupon_pool=campaign_pb2.CouponPool(kind="generated", prefix="VIP-", code_length=8),
        )
    )
    generated = {
        **offer,
        "trigger": {"event": {"name": "Upgraded"}},
        "steps": [{**offer["steps"][0], "coupon": {"pool_id": "made"}}, offer["steps"][1]],
    }
    await c.journey("made", generated)
    await c.track("p-1", "Upgraded", "u-1")
    await eventually(lambda: count(c.deliveries("made"), 1), what="the generated code's delivery")
    await c.tick()
    code = sink_lines(tmp_path)[-1]["body"]
    assert code.startswith("VIP-") and len(code) == 12 and code[4:].isalnum()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.stub.ImportCouponCodes(
            campaign_pb2.ImportCouponCodesRequest(pool=f"workspaces/{WS}/couponPools/made", codes=["ABCD-1"])
        )
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_webhook_provider_retries_with_backoff_then_dead_letters_visibly(start_campaign, doubles, webhooks):
    c = await start_campaign(**webhooks.env())
    webhooks.fail_first["/sms"] = 1
    doubles.profile.put(WS, "p-1", traits={"phone": "+8613900000001"}, consents={"sms": True})
    doubles.profile.put(WS, "p-2", traits={"wechat_openid": "o-2"}, consents={"wechat": True})
    journey = {
        "trigger": {"event": {"name": "Joined"}},
        "steps": [
            {"id": "text", "send": {"channel": "sms", "template": {"body": "Hi"}}},
            {"id": "wechat", "send": {"channel": "wechat", "template": {"template_id": "t1", "body": "Hi"}}},
            {"id": "hook", "webhook": {"url": webhooks.url("crm"), "body": '{"person": "{{ person_id }}"}'}},
        ],
    }
    await c.journey("hooks", journey)
    await c.track("p-1", "Joined", "j-1")
    await eventually(lambda: count(c.deliveries("hooks"), 3), what="three deliveries")
    await c.tick()
    statuses = {d.step_id: (d.status, d.attempts) for d in await c.deliveries("hooks")}
    # The SMS failed once (503) and waits for its retry; p-1 has no WeChat id; the webhook step went.
    assert statuses == {"text": ("pending", 1), "wechat": ("suppressed", 0), "hook": ("sent", 1)}
    (hook,) = [v for v in webhooks.delivered.values() if v["path"] == "/crm"]
    assert hook["body"] == {"person": "p-1"}
    c.clock.advance(timedelta(seconds=60))  # the first backoff
    await c.tick()
    assert {d.step_id: d.status for d in await c.deliveries("hooks")}["text"] == "sent"
    (sms,) = [v for v in webhooks.delivered.values() if v["path"] == "/sms"]
    assert sms["body"]["to"] == "+8613900000001" and webhooks.posts[sms["body"]["delivery_id"]] == 2

    webhooks.fail_always = True
    await c.track("p-1", "Joined", "j-2")  # after_exit: the first instance has ended
    await eventually(lambda: count(c.deliveries("hooks"), 6), what="the second round")
    for _ in range(3):  # CDP_CAMPAIGN_MAX_ATTEMPTS=3 in these tests
        await c.tick()
        c.clock.advance(timedelta(seconds=120))
    dead = await c.deliveries("hooks", status="dead")
    assert {d.step_id for d in dead} == {"text", "hook"} and all(d.attempts == 3 for d in dead)
    assert all("HTTP 503" in d.reason for d in dead)
    webhooks.fail_always = False
    retried = await c.stub.RetryDelivery(campaign_pb2.RetryDeliveryRequest(name=dead[0].name))
    assert retried.status == "pending"
    await c.tick()
    assert (
        await c.stub.ReportDeliveryStatus(
            campaign_pb2.ReportDeliveryStatusRequest(name=dead[0].name, status="delivered")
        )
    ).status == "delivered"


async def test_tags_branches_on_segment_and_profile(start_campaign, doubles, tmp_path):
    c = await start_campaign()
    doubles.segment.members[(WS, "vip")] = ["p-vip"]
    for person in ("p-vip", "p-new"):
        doubles.profile.put(
            WS, person, traits={"email": f"{person}@example.com"}, consents={"email": True}, tier="gold"
        )
    journey = {
        "trigger": {"event": {"name": "Joined"}},
        "steps": [
            {"id": "tag", "tag": {"add": ["joined"], "expire_after": "30d"}},
            {"id": "is-vip", "branch": {"condition": {"segment_id": "vip"}, "if_false": "gold"}},
            {
                "id": "vip-mail",
                "next": "end",
                "send": {"channel": "email", "template": {"subject": "VIP", "body": "v"}},
            },
            {
                "id": "gold",
                "branch": {
                    "condition": {"profile": {"property": "tier", "op": "eq", "value": "gold"}},
                    "if_false": "end",
                },
            },
            {"id": "gold-mail", "send": {"channel": "email", "template": {"subject": "Gold {{ tier }}", "body": "g"}}},
            {"id": "end", "exit": {}},
        ],
    }
    await c.journey("branches", journey)
    await c.track("p-vip", "Joined", "j-vip")
    await c.track("p-new", "Joined", "j-new")
    await eventually(lambda: count(c.deliveries("branches"), 2), what="two deliveries")
    await c.tick()
    subjects = {line["person_id"]: line["subject"] for line in sink_lines(tmp_path)}
    assert subjects == {"p-vip": "VIP", "p-new": "Gold gold"}
    assert doubles.profile.tags(WS, "p-vip") == ["joined"] and doubles.profile.tags(WS, "p-new") == ["joined"]
    request_ids = sorted(doubles.profile.tag_requests)
    assert all(r.endswith(".tag") for r in request_ids) and len(request_ids) == 2


async def test_segment_transition_date_and_schedule_triggers(start_campaign, doubles, tmp_path):
    c = await start_campaign()
    for person in ("p-seg", "p-tier", "p-bday", "p-points", "p-b1", "p-b2"):
        doubles.profile.put(
            WS, person, traits={"email": f"{person}@example.com"}, consents={"email": True}, tier="gold"
        )
    mail = {"channel": "email", "template": {"subject": "{{ journey.id }}", "body": "."}}
    await c.journey(
        "dormant", {"trigger": {"segment": {"segment_id": "dormant"}}, "steps": [{"id": "m", "send": mail}]}
    )
    await c.journey(
        "friend",
        {"trigger": {"transition": {"kind": "tier", "direction": "upgrade"}}, "steps": [{"id": "m", "send": mail}]},
    )
    await c.journey(
        "bday", {"trigger": {"date": {"attribute": "birthday", "at": "10:30"}}, "steps": [{"id": "m", "send": mail}]}
    )
    await c.journey(
        "points",
        {
            "trigger": {"date": {"attribute": "points_expiry", "days_before": 7, "at": "10:30"}},
            "steps": [{"id": "m", "send": mail}],
        },
    )
    doubles.segment.members[(WS, "promo")] = ["p-b1", "p-b2"]
    await c.journey(
        "broadcast",
        {
            "trigger": {"schedule": {"segment_id": "promo", "start": "2026-06-18T11:00", "every": "1d"}},
            "steps": [{"id": "m", "send": mail}],
        },
    )

    membership = events_pb2.SegmentMembershipChanged(
        workspace_id=WS,
        segment_id="dormant",
        person_id="p-seg",
        change=events_pb2.SegmentMembershipChanged.CHANGE_ENTERED,
    )
    await c.js.publish(c.names.subject(SEGMENT, "membership"), membership.SerializeToString())
    change = events_pb2.ProfileChanged(workspace_id=WS, person_id="p-tier", version=7)
    change.transitions.add(kind="tier", from_value="silver", to_value="gold", direction="upgrade")
    await c.js.publish(c.names.partitioned(PROFILE, "p-tier"), change.SerializeToString())
    birthday = events_pb2.ProfileChanged(workspace_id=WS, person_id="p-bday", version=3)
    birthday.snapshot.computed.update({"birthday_month_day": "06-18"})
    await c.js.publish(c.names.partitioned(PROFILE, "p-bday"), birthday.SerializeToString())
    # Points that expire on 25 June (Shanghai): the reminder 7 days before, on 18 June.
    expiry = events_pb2.ProfileChanged(workspace_id=WS, person_id="p-points", version=5)
    expiry.snapshot.computed.update({"next_points_expiry_time": "2026-06-25T03:00:00Z"})
    await c.js.publish(c.names.partitioned(PROFILE, "p-points"), expiry.SerializeToString())
    await eventually(lambda: count(c.deliveries(), 2), what="segment and transition deliveries")

    # 10:30 Shanghai: the birthday run; 11:00: the broadcast (and again a day later).
    async def dated():
        return await c.runtime.pool.fetchval("SELECT count(*) FROM person_dates") == 2

    await eventually(dated, what="the birthday projection")
    c.clock.set(datetime(2026, 6, 18, 3, 0, tzinfo=UTC))
    await c.tick()
    await eventually(lambda: count(c.deliveries(), 6), what="birthday, points and broadcast deliveries")
    await c.tick()
    journeys = sorted((line["subject"], line["person_id"]) for line in sink_lines(tmp_path))
    assert journeys == [
        ("bday", "p-bday"),
        ("broadcast", "p-b1"),
        ("broadcast", "p-b2"),
        ("dormant", "p-seg"),
        ("friend", "p-tier"),
        ("points", "p-points"),
    ]
    c.clock.advance(timedelta(days=1))
    await c.tick()
    await c.tick()
    assert len(await c.deliveries("broadcast")) == 4  # the recurring run, a new instance each


async def test_merged_persons_are_re_keyed(start_campaign, doubles):
    c = await start_campaign()
    once = {
        "trigger": {"event": {"name": "Joined"}},
        "reentry": {"mode": "once"},
        "steps": [{"id": "w", "wait": {"duration": "1d"}}],
    }
    await c.journey("once", once)
    await c.track("p-old", "Joined", "j-old")
    await c.track("p-new", "Joined", "j-new")
    await eventually(lambda: count(c.instances("once"), 2), what="two instances")
    merge = events_pb2.PersonsMerged(workspace_id=WS, survivor_person_id="p-new", merged_person_ids=["p-old"])
    await c.js.publish(c.names.subject(IDENTITY, "persons_merged"), merge.SerializeToString())

    async def rekeyed():
        return {(i.person_id, i.state, i.exit_reason) for i in await c.instances("once")} == {
            ("p-new", "active", ""),
            ("p-new", "exited", "merged"),
        }

    await eventually(rekeyed, what="re-keying")
    await c.track("p-new", "Joined", "j-again")  # once: the merged person does not enter again
    await c.track("p-other", "Joined", "j-other")
    await eventually(lambda: count(c.instances("once"), 3), what="the other person")
    assert len([i for i in await c.instances("once") if i.person_id == "p-new"]) == 2


async def test_pause_stops_enrolment_and_delete_needs_a_pause_and_ends_instances(start_campaign, doubles):
    c = await start_campaign()
    doubles.profile.put(WS, "p-1", traits={"email": "one@example.com"}, consents={"email": True})
    journey = {
        "trigger": {"event": {"name": "Joined"}},
        "reentry": {"mode": "always"},
        "steps": [
            {"id": "w", "wait": {"duration": "1h"}},
            {"id": "m", "send": {"channel": "email", "template": {"subject": "s", "body": "b"}}},
        ],
    }
    published = await c.journey("pausing", journey)
    await c.track("p-1", "Joined", "j-1")
    await eventually(lambda: count(c.instances("pausing"), 1), what="an instance")
    paused = await c.stub.PauseJourney(campaign_pb2.PauseJourneyRequest(name=published.name))
    assert paused.state == campaign_pb2.Journey.STATE_PAUSED
    await c.track("p-1", "Joined", "j-2")
    await c.track("p-1", "Joined", "j-3")
    # The running instance goes on; nobody new enrols while paused.
    c.clock.advance(timedelta(hours=1))
    await c.tick()
    assert [(d.step_id, d.status) for d in await c.deliveries("pausing")] == [("m", "sent")]
    assert len(await c.instances("pausing")) == 1

    again = await c.stub.PublishJourney(campaign_pb2.PublishJourneyRequest(name=published.name))
    assert again.state == campaign_pb2.Journey.STATE_ACTIVE and again.version == 2
    await c.track("p-1", "Joined", "j-4")
    await eventually(lambda: count(c.instances("pausing"), 2), what="enrolment after publishing again")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await c.stub.DeleteJourney(campaign_pb2.DeleteJourneyRequest(name=published.name))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await c.stub.PauseJourney(campaign_pb2.PauseJourneyRequest(name=published.name))
    await c.stub.DeleteJourney(campaign_pb2.DeleteJourneyRequest(name=published.name))
    states = sorted((i.journey_version, i.state, i.exit_reason) for i in await c.instances("pausing"))
    assert states == [(1, "completed", ""), (2, "exited", "journey_deleted")]
    c.clock.advance(timedelta(hours=2))
    await c.tick()
    assert len(await c.deliveries("pausing")) == 1
