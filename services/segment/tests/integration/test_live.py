"""Live membership from real announcements: ProfileChanged (snapshots, events, orders, moved
facts), PersonsMerged and ObjectTagsChanged in over NATS, SegmentMembershipChanged out through
the outbox, memberships read back over gRPC."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import grpc
import pytest

from cdp.events.v1 import events_pb2
from cdp.segment.v1 import segment_pb2
from cdpkit.bus import DLQ, PROFILE
from cdpkit.clock import ManualClock
from cdpkit.consumer import ConsumerLoop

from .harness import START, WS, event_fact, order_fact, person, running_segment, snapshot, start_segment


async def test_a_profile_change_enters_and_exits_once(segment):
    await segment.create("gold", 'tier = "gold"')
    alice = person()
    trigger = await segment.profile(alice, 1, snapshot(tier="gold"), trigger="evt-1", changed=("tier",))
    [entered] = await segment.changes(1)
    assert (entered.segment_id, entered.person_id, entered.entered) == ("gold", alice, True)
    assert (entered.reason, entered.version, entered.trigger) == ("profile change", 1, "evt-1")
    assert await segment.is_member("gold", alice)

    # The same announcement again (a redelivery under another message id) and an older version
    # change nothing.
    await segment.profile(alice, 1, snapshot(tier="gold"), trigger="evt-1", msg_id=trigger + ":again")
    await segment.profile(alice, 2, snapshot(tier="silver"), trigger="evt-2")
    [exited] = await segment.changes(1)
    assert (exited.person_id, exited.entered, exited.trigger) == (alice, False, "evt-2")
    await segment.profile(alice, 1, snapshot(tier="gold"), msg_id="stale-copy")
    await segment.quiet()
    assert not await segment.is_member("gold", alice)
    history = await segment.stub.ListMembershipChanges(
        segment_pb2.ListMembershipChangesRequest(parent=f"workspaces/{WS}/segments/gold", person_id=alice)
    )
    assert [(c.entered, c.reason) for c in history.changes] == [(False, "profile change"), (True, "profile change")]


async def test_an_undecodable_announcement_is_dead_lettered_alone(segment):
    await segment.create("gold", 'tier = "gold"')
    first, second = person(), person()
    # Same partition subject as `first`: the three arrive in one batch.
    subject = segment.names.partitioned(PROFILE, first)
    await segment.profile(first, 1, snapshot(tier="gold"))
    await segment.js.publish(subject, b"\xff\xff not a ProfileChanged", headers={"Nats-Msg-Id": "garbage"})
    await segment.profile(second, 1, snapshot(tier="gold"))
    assert {c.person_id for c in await segment.changes(2)} == {first, second}
    dead = await segment.js.pull_subscribe(
        segment.names.dlq_subject("segment-profile"), stream=segment.names.stream(DLQ)
    )
    [message] = await dead.fetch(1, timeout=5)
    assert message.data.startswith(b"\xff\xff")
    assert "not a ProfileChanged" in message.headers["Cdp-Dlq-Reason"]


async def test_events_orders_pii_and_consent_reach_the_rules(segment):
    await segment.create(
        "engaged",
        'event("Product Viewed", within 7d, where sku = "A-1") >= 2 and orders.sum(within 30d) >= 10000'
        " and traits.email exists and consent.sms = true",
    )
    bob = person()
    views = [event_fact("Product Viewed", START - timedelta(days=d), {"sku": "A-1"}) for d in (1, 2)]
    await segment.profile(
        bob,
        1,
        snapshot(pii=("email",), consent={"sms": True}),
        events=views[:1],
        orders=[order_fact("o-1", START - timedelta(days=3), 6000)],
    )
    await segment.quiet(0.4)
    await segment.profile(
        bob,
        2,
        snapshot(pii=("email",), consent={"sms": True}),
        events=views[1:],
        orders=[order_fact("o-2", START - timedelta(days=1), 4000)],
        changed=("events:Product Viewed", "orders"),
    )
    [entered] = await segment.changes(1)
    assert (entered.person_id, entered.entered) == (bob, True)
    # A refund lowers the order total: the sum drops below 100.00 and bob leaves.
    await segment.profile(
        bob,
        3,
        snapshot(pii=("email",), consent={"sms": True}),
        orders=[order_fact("o-2", START - timedelta(days=1), 1000)],
        changed=("orders",),
    )
    [exited] = await segment.changes(1)
    assert (exited.person_id, exited.entered) == (bob, False)
    # PII values never reach the segment service: a rule comparing one is refused.
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await segment.create("by-email", 'traits.email = "bob@example.com"')
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "personal data" in error.value.details()


async def test_a_merge_removes_the_merged_away_memberships_and_reevaluates_the_survivor(segment):
    await segment.create("vip", 'tags contains "vip"')
    await segment.create("repeat", "orders.count() >= 2")
    kept, gone = person(), person()
    await segment.profile(kept, 1, snapshot(), orders=[order_fact("o-k", START - timedelta(days=5), 5000)])
    await segment.profile(gone, 1, snapshot(tags=("vip",)), orders=[order_fact("o-g", START - timedelta(days=2), 3000)])
    [vip] = await segment.changes(1)
    assert (vip.segment_id, vip.person_id) == ("vip", gone)

    await segment.merged(kept, gone, trigger="login-7")
    entered, exited = await segment.changes(2)  # sorted by segment id
    assert (entered.segment_id, entered.person_id, entered.entered, entered.reason) == (
        "repeat",
        kept,
        True,
        "persons merged",
    )
    assert (exited.segment_id, exited.person_id, exited.entered, exited.reason) == (
        "vip",
        gone,
        False,
        "persons merged",
    )
    assert exited.trigger == "login-7"
    assert await segment.members("vip") == set() and await segment.members("repeat") == {kept}
    # The merged-away id answers with its survivor.
    check = await segment.stub.CheckMembership(
        segment_pb2.CheckMembershipRequest(parent=f"workspaces/{WS}/segments/repeat", person_id=gone)
    )
    assert check.member and check.person_id == kept

    # The profile then announces the merged profile (facts moved): nothing changes twice, and a
    # late announcement for the merged-away person does not bring it back.
    moved = events_pb2.FactsMoved(merged_person_ids=[gone])
    await segment.profile(kept, 2, snapshot(tags=("vip",)), moved=moved, changed=("tags",))
    [vip_again] = await segment.changes(1)
    assert (vip_again.segment_id, vip_again.person_id, vip_again.entered) == ("vip", kept, True)
    await segment.profile(gone, 2, snapshot(tags=("vip",)))
    await segment.merged(kept, gone)
    await segment.quiet()
    assert await segment.members("vip") == {kept}
    rows = await segment.sql("SELECT count(*) AS n FROM persons WHERE person_id = $1::uuid", gone)
    assert rows[0]["n"] == 0

    # Identity undoes the merge (PersonSplit, on the same consumer as PersonsMerged, after it):
    # the old id answers for itself again.
    await segment.split(kept, gone)
    for _ in range(100):
        check = await segment.stub.CheckMembership(
            segment_pb2.CheckMembershipRequest(parent=f"workspaces/{WS}/segments/repeat", person_id=gone)
        )
        if check.person_id == gone:
            break
        await asyncio.sleep(0.05)
    assert (check.person_id, check.member) == (gone, False)


async def test_a_split_moves_facts_back(segment):
    await segment.create("buyers", "orders.count() >= 1")
    original, split_off = person(), person()
    await segment.profile(
        original,
        1,
        snapshot(),
        orders=[order_fact("o-1", START - timedelta(days=1), 100), order_fact("o-2", START, 200)],
    )
    [entered] = await segment.changes(1)
    assert entered.person_id == original
    moved = events_pb2.FactsMoved(split_from_person_id=original, order_ids=["o-1", "o-2"])
    await segment.profile(split_off, 1, snapshot(), moved=moved)
    changes = {c.person_id: c.entered for c in await segment.changes(2)}
    assert changes == {original: False, split_off: True}


async def test_an_unmerge_brings_the_merged_away_person_back_as_itself(segment):
    await segment.create("buyers", "orders.count() >= 1")
    kept, gone = person(), person()
    await segment.profile(kept, 1, snapshot(), orders=[order_fact("o-1", START, 100)])
    await segment.profile(gone, 1, snapshot(), orders=[order_fact("o-2", START, 200)])
    assert len(await segment.changes(2)) == 2
    await segment.merged(kept, gone)
    [left] = await segment.changes(1)
    assert (left.person_id, left.entered) == (gone, False)
    # The unmerge: profile announces the returning person with the facts that move back to it.
    moved = events_pb2.FactsMoved(split_from_person_id=kept, order_ids=["o-2"])
    await segment.profile(gone, 2, snapshot(), moved=moved)
    [back] = await segment.changes(1)
    assert (back.person_id, back.entered) == (gone, True)
    assert await segment.members("buyers") == {kept, gone}
    check = await segment.stub.CheckMembership(
        segment_pb2.CheckMembershipRequest(parent=f"workspaces/{WS}/segments/buyers", person_id=gone)
    )
    assert check.member and check.person_id == gone  # itself again, not an alias of the survivor


async def test_object_tags_change_membership_of_the_persons_who_bought_there(segment):
    await segment.create("low-store-buyers", 'order.store.tag = "low-performing"')
    carol, dave = person(), person()
    await segment.profile(carol, 1, snapshot(), orders=[order_fact("o-c", START, 100, store="s-1")])
    await segment.profile(dave, 1, snapshot(), orders=[order_fact("o-d", START, 100, store="s-2")])
    await segment.quiet(0.4)
    await segment.object_tags("store", "s-1", ["low-performing"], version=1)
    [entered] = await segment.changes(1)
    assert (entered.person_id, entered.reason) == (carol, "object tags changed")
    await segment.object_tags("store", "s-1", ["flagship"], version=3)
    await segment.object_tags("store", "s-1", ["low-performing"], version=2)  # older: ignored
    [exited] = await segment.changes(1)
    assert (exited.person_id, exited.entered) == (carol, False)
    await segment.quiet()


async def test_the_live_consumer_coalesces_by_default_and_takes_its_settings(service_env, nats_url):
    for tuning, expected in (
        ({}, (0.0, True)),
        ({"CDP_SEGMENT_CONSUMER_LINGER_MS": "400", "CDP_SEGMENT_CONSUMER_COALESCE": "false"}, (0.4, False)),
    ):
        runtime = await start_segment(service_env, nats_url, ManualClock(START), **tuning)
        try:
            [live] = [w for w in runtime.workers if isinstance(w, ConsumerLoop) and w.name == "segment-profile"]
            assert (live.spec.linger_seconds, live.spec.coalesce, live.spec.partitioned) == (*expected, True)
        finally:
            await runtime.stop()


async def test_a_lingering_live_consumer_holds_a_trickle_for_its_linger(service_env, nats_url):
    async with running_segment(service_env, nats_url, CDP_SEGMENT_CONSUMER_LINGER_MS="400") as segment:
        await segment.create("gold", 'tier = "gold"')
        shoppers = [person() for _ in range(6)]
        sent = time.monotonic()
        for shopper in shoppers:
            await segment.profile(shopper, 1, snapshot(tier="gold"))
        entered = await segment.changes(6)
        assert {(c.person_id, c.entered) for c in entered} == {(s, True) for s in shoppers}
        assert time.monotonic() - sent >= 0.35  # held for the linger, not handed over at once
