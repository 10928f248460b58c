"""The 360° profile against real PostgreSQL, NATS JetStream and gRPC over a socket: orders, tags,
tiers, points, lifecycle timers on a manual clock, merges and splits, objects, the API."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, timedelta

import grpc
import nats
import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from cdp.events.v1 import events_pb2
from cdp.profile.v1 import profile_pb2, profile_pb2_grpc
from cdp_profile import __main__ as profile_main
from cdp_profile.bootstrap import bootstrap
from cdpkit.bus import IDENTITY, PROFILE, RESOLVED, BusNames
from cdpkit.clock import ManualClock
from cdpkit.config import load
from cdpkit.ids import new_id
from cdpkit.migrate import migrate

from .helpers import T0, WS
from .helpers import resolved as event


class Harness:
    def __init__(self, stub, js, names, clock=None):
        self.stub, self.js, self.names, self.clock = stub, js, names, clock

    def name(self, person):
        return f"workspaces/{WS}/profiles/{person}"

    async def publish(self, person, *events, msg_id=None):
        batch = events_pb2.ResolvedEventBatch(events=list(events))
        headers = {"Nats-Msg-Id": msg_id or new_id()}
        await self.js.publish(self.names.partitioned(RESOLVED, person), batch.SerializeToString(), headers=headers)

    async def profile(self, person, predicate=lambda p: True, timeout=10.0):
        deadline = asyncio.get_running_loop().time() + timeout
        last = None
        while True:
            try:
                last = await self.stub.GetProfile(profile_pb2.GetProfileRequest(name=self.name(person)))
                if predicate(last):
                    return last
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"profile {person} never matched; last: {last}")
            await asyncio.sleep(0.05)

    async def settings(self, **document):
        settings = profile_pb2.ProfileSettings(name=f"workspaces/{WS}/profileSettings")
        for key, value in document.items():
            if isinstance(value, list):
                getattr(settings, key).extend(value)
            elif isinstance(value, dict):
                getattr(settings, key).update(value)
            else:
                setattr(settings, key, value)
        return await self.stub.UpdateProfileSettings(
            profile_pb2.UpdateProfileSettingsRequest(
                settings=settings, update_mask=field_mask_pb2.FieldMask(paths=list(document))
            )
        )


def order(person, message_id, minutes, order_id, total, **extra):
    products = [{"product_id": "p-1", "sku": "A-1", "category": "outdoor/poles", "price": total, "quantity": 1}]
    return event(person, message_id, minutes, "Order Completed", order_id=order_id, total=total,
                 currency="CNY", products=products, **extra)  # fmt: skip


async def next_change(sub, person, predicate=lambda c: True, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise AssertionError("no matching ProfileChanged")
        message = await sub.next_msg(timeout=remaining)
        change = events_pb2.ProfileChanged.FromString(message.data)
        if change.person_id == person and predicate(change):
            return change


async def identity_applied_up_to(s, sequence, timeout=10.0):
    import asyncpg

    conn = await asyncpg.connect(s.database_url, server_settings={"search_path": profile_main.SCHEMA})
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while (await conn.fetchval("SELECT sequence FROM stream_positions WHERE name = 'identity'") or 0) < sequence:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"identity's announcement {sequence} never applied")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


@pytest.fixture
async def stack(service_env, nats_url):
    """The profile service in this event loop on a manual clock (timers wake every 0.05 s)."""
    env = {
        **service_env,
        "CDP_PROFILE_GRPC_PORT": "0",
        "CDP_PROFILE_METRICS_PORT": "0",
        "CDP_PROFILE_TIMER_INTERVAL_SECONDS": "0.05",
    }
    settings = load(profile_main.Settings, env)
    await migrate(settings.database_url.get(), profile_main.SCHEMA, profile_main.MIGRATIONS)
    clock = ManualClock(T0 + timedelta(hours=1))
    runtime = await bootstrap(settings, clock=clock)
    await runtime.start()
    nc = await nats.connect(nats_url)
    names = BusNames(service_env["CDP_BUS_PREFIX"])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
            harness = Harness(profile_pb2_grpc.ProfileServiceStub(channel), nc.jetstream(), names, clock)
            harness.database_url = service_env["CDP_DATABASE_URL"]
            harness.changes = await harness.js.subscribe(names.all_subjects(PROFILE), stream=names.stream(PROFILE))
            yield harness
    finally:
        await nc.close()
        await runtime.stop()


TIERS = {"by": "total_spent_minor", "levels": [{"name": "silver", "min": 10000}, {"name": "gold", "min": 100000}]}


async def test_second_order_tags_repurchase_upgrades_the_tier_and_a_refund_takes_it_back(stack):
    s = stack
    await s.settings(
        tiers=TIERS,
        points={"per_currency_unit": 1, "expire_after_days": 365},
        tag_rules=[{"tag": "repurchase", "when": "order_count >= 2"}],
    )
    person = str(uuid.uuid4())
    await s.publish(person, order(person, "o1", 1, "A-1001", 80.00, store_id="s-1", channel="pos"))
    first = await s.profile(person, lambda p: p.computed["order_count"] == 1)
    assert first.tier == "" and first.lifecycle_stage == "new" and not first.tags

    await s.publish(person, order(person, "o2", 30, "A-1002", 40.50))
    change = await next_change(s.changes, person, lambda c: c.trigger_message_id == "o2")
    transitions = {(t.kind, t.from_value, t.to_value, t.direction, t.cause) for t in change.transitions}
    assert ("tag_added", "", "repurchase", "", "rule:repurchase") in transitions
    assert ("tier", "", "silver", "upgrade", "event") in transitions
    assert {"tags", "tier", "orders", "computed.order_count", "events:Order Completed"} <= set(change.changed_fields)
    assert change.snapshot.tier == "silver" and list(change.snapshot.tags) == ["repurchase"]
    assert [(o.order_id, o.total_minor, o.status) for o in change.orders] == [("A-1002", 4050, "completed")]
    assert change.snapshot.points_balance == 120

    got = await s.profile(person)
    assert got.tier == "silver" and [t.tag for t in got.tags] == ["repurchase"]
    assert got.tags[0].source == "rule:repurchase"
    assert got.computed["total_spent_minor"] == 12050 and got.computed["clv_historical_minor"] == 12050
    assert got.computed["favourite_store"] == "s-1" and got.computed["favourite_category"] == "outdoor/poles"
    assert got.points_balance == 120
    assert [o.order_id for o in got.recent_orders] == ["A-1002", "A-1001"]

    # A refund lowers total spent, CLV and points; the tier and the tag follow.
    await s.publish(person, event(person, "r1", 40, "Order Refunded", order_id="A-1002", total=40.50))
    refunded = await s.profile(person, lambda p: p.computed["refunded_minor"] == 4050)
    assert refunded.computed["total_spent_minor"] == 8000 and refunded.computed["clv_historical_minor"] == 8000
    assert refunded.points_balance == 80 and refunded.tier == "" and not refunded.tags
    assert refunded.computed["order_count"] == 1
    orders = await s.stub.ListProfileOrders(profile_pb2.ListProfileOrdersRequest(parent=s.name(person)))
    assert [(o.order_id, o.status, o.refunded_minor) for o in orders.orders] == [
        ("A-1002", "refunded", 4050),
        ("A-1001", "completed", 0),
    ]
    ledger = await s.stub.ListPointsEntries(profile_pb2.ListPointsEntriesRequest(parent=s.name(person)))
    assert [(e.kind, e.points, e.balance_after) for e in ledger.entries] == [
        ("refund", -40, 80),
        ("earn", 40, 120),
        ("earn", 80, 80),
    ]

    # Replaying every event (another chunk id, as after a crash) changes nothing.
    version = refunded.version
    await s.publish(
        person,
        order(person, "o1", 1, "A-1001", 80.00),
        order(person, "o2", 30, "A-1002", 40.50),
        event(person, "r1", 40, "Order Refunded", order_id="A-1002", total=40.50),
    )
    await s.publish(person, event(person, "marker", 50))
    after = await s.profile(person, lambda p: p.event_count == 4)
    assert after.version == version + 1  # the marker only
    assert after.computed["total_spent_minor"] == 8000 and after.points_balance == 80


async def test_traits_by_time_and_source_api_updates_and_pii(stack):
    s = stack
    await s.settings(source_priority=["crm", "web"])
    person = str(uuid.uuid4())
    identify = events_pb2.EVENT_TYPE_IDENTIFY
    await s.publish(person, event(person, "i2", 20, "", identify, {"city": "上海市浦东新区", "email": "new@shop.io"}))
    await s.profile(person, lambda p: p.event_count == 1)
    # An older identify arriving late does not overwrite the newer values.
    await s.publish(person, event(person, "i1", 10, "", identify, {"city": "Beijing", "email": "old@shop.io"}))
    got = await s.profile(person, lambda p: p.event_count == 2)
    assert got.traits["city"] == "上海市浦东新区" and got.traits["email"] == "new@shop.io"
    assert got.computed["region_code"] == "310115"

    # The API: set (source crm outranks the events' unnamed source), set_once, unset; idempotent.
    request = profile_pb2.UpdateProfileTraitsRequest(
        name=s.name(person), source="crm", request_id="r-1", unset=["city"]
    )
    request.set.update({"name": "李雷", "birthday": "1990-06-18"})
    request.set_once.update({"first_channel": "pos", "email": "ignored@shop.io"})
    updated = await s.stub.UpdateProfileTraits(request)
    assert updated.traits["name"] == "李雷" and updated.traits["first_channel"] == "pos"
    assert updated.traits["email"] == "new@shop.io" and "city" not in updated.traits
    assert updated.computed["birthday_month_day"] == "06-18"
    again = await s.stub.UpdateProfileTraits(request)
    assert again.version == updated.version and again.event_count == updated.event_count
    await s.publish(person, event(person, "i3", 90, "", identify, {"name": "lilei88"}))
    later = await s.profile(person, lambda p: p.event_count == 4)
    assert later.traits["name"] == "李雷"  # a newer web value does not beat crm

    change = await next_change(s.changes, person, lambda c: "traits.name" in c.changed_fields)
    assert change.values["traits.name"] is True  # PII: set, value withheld
    assert "name" in change.snapshot.pii_traits and "name" not in change.snapshot.traits
    assert change.snapshot.computed["birthday_month_day"] == "06-18"

    # Nothing personal in the clear at rest.
    conn = await _connect(s)
    try:
        traits = await conn.fetchval(
            "SELECT traits::text FROM profile.profiles WHERE person_id = $1", uuid.UUID(person)
        )
        raw_events = await conn.fetchval("SELECT string_agg(coalesce(traits::text, ''), ' ') FROM profile.events")
    finally:
        await conn.close()
    assert "new@shop.io" not in traits and "李雷" not in traits and "first_channel" in traits
    assert "new@shop.io" not in raw_events and "李雷" not in raw_events

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await s.stub.UpdateProfileTraits(profile_pb2.UpdateProfileTraitsRequest(name=s.name(person), unset=["x"]))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await s.stub.UpdateProfileTraits(
            profile_pb2.UpdateProfileTraitsRequest(name=s.name(str(uuid.uuid4())), unset=["x"], request_id="r")
        )
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def _connect(s):
    import asyncpg

    return await asyncpg.connect(s.database_url)


async def test_dormant_exactly_when_the_time_comes_without_any_event(stack):
    s = stack
    await s.settings(lifecycle={"new_within_days": 30, "dormant_after_days": 90, "churned_after_days": 365})
    person = str(uuid.uuid4())
    await s.publish(person, order(person, "o1", 0, "B-1", 10.00))
    got = await s.profile(person, lambda p: p.computed["order_count"] == 1)
    assert got.lifecycle_stage == "new"
    assert got.next_due_time.ToDatetime(UTC) == T0 + timedelta(days=30)

    s.clock.set(T0 + timedelta(days=30))
    got = await s.profile(person, lambda p: p.lifecycle_stage == "active")
    dormant_at = T0 + timedelta(days=90)
    assert got.next_due_time.ToDatetime(UTC) == dormant_at
    s.clock.set(dormant_at - timedelta(seconds=1))
    await asyncio.sleep(0.5)  # several timer rounds: nothing is due yet
    assert (await s.profile(person)).lifecycle_stage == "active"

    s.clock.set(dormant_at)
    change = await next_change(s.changes, person, lambda c: c.snapshot.lifecycle_stage == "dormant")
    assert [(t.kind, t.from_value, t.to_value, t.cause) for t in change.transitions] == [
        ("lifecycle_stage", "active", "dormant", "time")
    ]
    assert change.transitions[0].transition_time.ToDatetime(UTC) == dormant_at
    assert not change.events and change.trigger_message_id == ""
    got = await s.profile(person)
    assert got.lifecycle_stage == "dormant" and got.lifecycle_stage_time.ToDatetime(UTC) == dormant_at
    assert got.event_count == 1


async def test_merge_moves_everything_to_the_survivor_and_a_split_recomputes_both(stack):
    s = stack
    await s.settings(points={"per_currency_unit": 1, "expire_after_days": 365}, tiers=TIERS)
    survivor, merged = str(uuid.uuid4()), str(uuid.uuid4())
    await s.publish(survivor, order(survivor, "s-o1", 1, "M-1", 50.00, identifiers=[("user_id", "u1")]))
    await s.publish(merged, order(merged, "m-o1", 2, "M-2", 70.00, identifiers=[("phone", "+8613912345678")]))
    await s.profile(survivor, lambda p: p.points_balance == 50)
    await s.profile(merged, lambda p: p.points_balance == 70)
    await s.stub.ModifyProfileTags(
        profile_pb2.ModifyProfileTagsRequest(
            name=s.name(merged), add=[profile_pb2.TagAssignment(tag="vip")], request_id="t-1"
        )
    )
    consented = await s.stub.UpdateConsent(
        profile_pb2.UpdateConsentRequest(name=s.name(merged), channel="sms", granted=True)
    )
    before = max(consented.version, (await s.profile(survivor)).version)

    announcement = events_pb2.PersonsMerged(
        workspace_id=WS, survivor_person_id=survivor, merged_person_ids=[merged], merge_id="mg-1"
    )
    for _ in range(2):  # delivered twice: applied once
        ack = await s.js.publish(s.names.subject(IDENTITY, "persons_merged"), announcement.SerializeToString())
    await identity_applied_up_to(s, ack.seq)
    got = await s.profile(survivor, lambda p: p.event_count == 2)
    assert got.version == before + 1
    assert got.points_balance == 120 and got.computed["order_count"] == 2 and got.tier == "silver"
    assert [t.tag for t in got.tags] == ["repurchase", "vip"] and got.consents[0].channel == "sms"
    assert list(got.merged_person_ids) == [merged]
    change = await next_change(s.changes, survivor, lambda c: c.HasField("moved"))
    assert list(change.moved.merged_person_ids) == [merged] and change.snapshot.points_balance == 120
    assert any(t.kind == "tier" and t.cause == "merge" for t in change.transitions)
    # The merged-away id answers with the survivor, and its late events are re-keyed.
    alias = await s.stub.GetProfile(profile_pb2.GetProfileRequest(name=s.name(merged)))
    assert alias.person_id == survivor and alias.requested_person_id == merged
    await s.publish(merged, event(merged, "late", 5, identifiers=[("phone", "+8613912345678")]))
    await s.profile(survivor, lambda p: p.event_count == 3)
    await asyncio.sleep(0.5)
    got = await s.profile(survivor, lambda p: p.event_count == 3)
    assert got.points_balance == 120

    # Identity splits the phone off again: its events, order and points go with it.
    split = events_pb2.PersonSplit(
        workspace_id=WS,
        person_id=survivor,
        new_person_id=merged,
        moved_identifiers=[events_pb2.Identifier(type="phone", value="+8613912345678")],
        undone_merge_id="mg-1",
    )
    await s.js.publish(s.names.subject(IDENTITY, "person_split"), split.SerializeToString())
    back = await s.profile(merged, lambda p: p.person_id == merged and p.event_count == 2)
    assert back.points_balance == 70 and back.computed["order_count"] == 1
    kept = await s.profile(survivor, lambda p: p.event_count == 1)
    assert kept.points_balance == 50 and kept.computed["total_spent_minor"] == 5000 and kept.tier == ""
    moved = await next_change(s.changes, merged, lambda c: c.moved.split_from_person_id == survivor)
    assert moved.version > 3  # goes on from the versions the id had before the merge
    assert sorted(moved.moved.message_ids) == ["late", "m-o1"] and list(moved.moved.order_ids) == ["M-2"]


async def test_tags_consent_points_objects_and_bad_input(stack):
    s = stack
    person = str(uuid.uuid4())
    await s.publish(person, event(person, "v1", 1))
    await s.profile(person)

    add = profile_pb2.TagAssignment(tag="vip")
    add.expire_time.FromDatetime(T0 + timedelta(days=2))
    request = profile_pb2.ModifyProfileTagsRequest(name=s.name(person), add=[add], source="journey:j1", request_id="q")
    tagged = await s.stub.ModifyProfileTags(request)
    assert [(t.tag, t.source) for t in tagged.tags] == [("vip", "journey:j1")]
    retried = await s.stub.ModifyProfileTags(request)
    assert retried.version == tagged.version
    s.clock.set(T0 + timedelta(days=2))
    await s.profile(person, lambda p: not p.tags)
    s.clock.set(T0 + timedelta(hours=1))

    await s.stub.UpdateConsent(
        profile_pb2.UpdateConsentRequest(name=s.name(person), channel="email", purpose="marketing", granted=True)
    )
    out = await s.stub.Unsubscribe(profile_pb2.UnsubscribeRequest(name=s.name(person), channel="email"))
    assert {(c.channel, c.purpose, c.granted) for c in out.consents} == {
        ("email", "", False),
        ("email", "marketing", False),
    }

    earn = profile_pb2.ChangePointsRequest(name=s.name(person), kind="earn", points=100, reference="welcome")
    first = await s.stub.ChangePoints(earn)
    assert (first.points, first.balance_after) == (100, 100)
    assert (await s.stub.ChangePoints(earn)).name == first.name  # idempotent by reference
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await s.stub.ChangePoints(
            profile_pb2.ChangePointsRequest(name=s.name(person), kind="redeem", points=101, reference="r1")
        )
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    redeemed = await s.stub.ChangePoints(
        profile_pb2.ChangePointsRequest(name=s.name(person), kind="redeem", points=60, reference="r2")
    )
    assert redeemed.balance_after == 40

    stores = await s.stub.BatchUpsertStores(
        profile_pb2.BatchUpsertStoresRequest(
            parent=f"workspaces/{WS}",
            stores=[
                profile_pb2.Store(
                    name=f"workspaces/{WS}/stores/S001",
                    city="杭州",
                    address="西湖区文三路 1 号",
                    tags=["low-performing"],
                ),
                profile_pb2.Store(name=f"workspaces/{WS}/stores/S002", city="Shanghai"),
            ],
        )
    )
    assert [(x.region_code, list(x.tags)) for x in stores.stores] == [("330106", ["low-performing"]), ("310000", [])]
    objects = await s.js.subscribe(s.names.subject(PROFILE, "objects"), stream=s.names.stream(PROFILE))
    tagged_change = events_pb2.ObjectTagsChanged.FromString((await objects.next_msg(timeout=10)).data)
    assert (tagged_change.object_kind, tagged_change.object_id, list(tagged_change.tags)) == (
        "store",
        "S001",
        ["low-performing"],
    )
    updated = await s.stub.UpdateStore(
        profile_pb2.UpdateStoreRequest(
            store=profile_pb2.Store(name=f"workspaces/{WS}/stores/S001", tags=[]),
            update_mask=field_mask_pb2.FieldMask(paths=["tags"]),
        )
    )
    assert list(updated.tags) == [] and updated.region_code == "330106"
    untagged = events_pb2.ObjectTagsChanged.FromString((await objects.next_msg(timeout=10)).data)
    assert (untagged.object_id, list(untagged.tags), untagged.version) == ("S001", [], 2)
    await s.stub.BatchUpsertProducts(
        profile_pb2.BatchUpsertProductsRequest(
            parent=f"workspaces/{WS}",
            products=[profile_pb2.Product(name=f"workspaces/{WS}/products/P-{i}", sku=f"A-{i}") for i in range(3)],
        )
    )
    page = await s.stub.ListProducts(profile_pb2.ListProductsRequest(parent=f"workspaces/{WS}", page_size=2))
    rest = await s.stub.ListProducts(
        profile_pb2.ListProductsRequest(parent=f"workspaces/{WS}", page_size=2, page_token=page.next_page_token)
    )
    assert [p.sku for p in page.products] + [p.sku for p in rest.products] == ["A-0", "A-1", "A-2"]
    await s.stub.BatchUpsertStaffMembers(
        profile_pb2.BatchUpsertStaffMembersRequest(
            parent=f"workspaces/{WS}",
            staff_members=[profile_pb2.StaffMember(name=f"workspaces/{WS}/staff/E7", store_id="S001", tags=["top"])],
        )
    )
    assert (
        await s.stub.GetStaffMember(profile_pb2.GetStaffMemberRequest(name=f"workspaces/{WS}/staff/E7"))
    ).store_id == "S001"
    await s.stub.DeleteProduct(profile_pb2.DeleteProductRequest(name=f"workspaces/{WS}/products/P-0"))

    bad = [
        s.stub.GetProduct(profile_pb2.GetProductRequest(name=f"workspaces/{WS}/products/P-0")),
        s.stub.ChangePoints(profile_pb2.ChangePointsRequest(name=s.name(person), kind="steal", reference="x")),
        s.stub.UpdateConsent(profile_pb2.UpdateConsentRequest(name=s.name(person), channel="E-mail!")),
        s.stub.ModifyProfileTags(profile_pb2.ModifyProfileTagsRequest(name=s.name(person), remove=["x"])),
        s.settings(tag_rules=[{"tag": "x", "when": "order_count >>= 2"}]),
        s.settings(lifecycle={"dormant_after_days": 400, "churned_after_days": 365}),
        s.stub.BatchUpsertStores(profile_pb2.BatchUpsertStoresRequest(parent=f"workspaces/{WS}")),
    ]
    unchanged = await s.stub.GetProfile(profile_pb2.GetProfileRequest(name=s.name(person)))
    refusals = []
    for call in bad:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call
        refusals.append((error.value.code(), _violated_field(error.value)))
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    assert refusals == [
        (grpc.StatusCode.NOT_FOUND, ""),
        (invalid, "kind"),
        (invalid, "channel"),
        (invalid, "request_id"),
        (invalid, "settings.tag_rules[0].when"),
        (invalid, "settings.lifecycle.churned_after_days"),
        (invalid, "stores"),
    ]
    after = await s.stub.GetProfile(profile_pb2.GetProfileRequest(name=s.name(person)))
    assert after.version == unchanged.version and [t.tag for t in after.tags] == [t.tag for t in unchanged.tags]
    settings = await s.stub.GetProfileSettings(
        profile_pb2.GetProfileSettingsRequest(name=f"workspaces/{WS}/profileSettings")
    )
    assert settings.version == 0 and settings.time_zone == "Asia/Shanghai"
    assert [r["tag"] for r in settings.tag_rules] == ["repurchase"]
    assert isinstance(settings.lifecycle, struct_pb2.Struct)


def _violated_field(error: grpc.aio.AioRpcError) -> str:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)
    for detail in status.details if status else ():
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            return bad_request.field_violations[0].field
    return ""
