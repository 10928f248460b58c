from datetime import UTC, datetime, timedelta

import pytest

from cdp_profile import domain
from cdp_profile.domain import NewEvent, Order, ProfileState, apply_events
from cdp_profile.rules import from_document

T0 = datetime(2026, 6, 18, 12, 0, tzinfo=UTC)
SETTINGS = from_document(
    1,
    {
        "tag_rules": [{"tag": "repurchase", "when": "order_count >= 2"}],
        "tiers": {
            "by": "total_spent_minor",
            "levels": [{"name": "silver", "min": 10000}, {"name": "gold", "min": 50000}],
        },
        "points": {"per_currency_unit": 1, "expire_after_days": 365},
        "source_priority": ["crm", "pos"],
        "windowed_traits": [{"name": "views_7d", "event": "Product Viewed", "days": 7}],
    },
)


def ev(message_id, minutes, traits=None, type_="track", event="Product Viewed", source="", **properties):
    return NewEvent(
        message_id, "p1", type_, event, T0 + timedelta(minutes=minutes), properties, traits or {}, source=source
    )


def order(message_id, minutes, order_id, total, **extra):
    return ev(message_id, minutes, event="Order Completed", order_id=order_id, total=total, **extra)


def run(state, events, orders=None, now=None):
    return apply_events(state, events, SETTINGS, now or T0 + timedelta(hours=1), orders)


def test_first_events_create_counters_and_seen_times():
    change = run(ProfileState("p1"), [ev("b", 5), ev("a", 1)])
    state = change.state
    assert state.event_count == 2
    assert state.first_seen_at == T0 + timedelta(minutes=1)
    assert state.last_seen_at == T0 + timedelta(minutes=5)
    assert state.version == 1 and state.lifecycle_stage == "prospect"
    assert change.trigger.message_id == "b"
    assert change.changed["computed.event_count"] == 2
    assert change.changed["events:Product Viewed"] == 2
    assert state.computed["views_7d"] == 2


def test_an_older_trait_arriving_late_does_not_overwrite_a_newer_one():
    state = run(ProfileState("p1"), [ev("2", 10, {"city": "Shanghai"}, "identify")]).state
    late = run(state, [ev("1", 1, {"city": "Beijing", "tier": "gold"}, "identify")])
    assert late.state.traits == {"city": "Shanghai", "tier": "gold"}
    assert "traits.city" not in late.changed and late.changed["traits.tier"] == "gold"
    # A later unset wins over the set, and an earlier set cannot bring the value back.
    unset = run(late.state, [ev("3", 20, {"city": None}, "identify")]).state
    again = run(unset, [ev("4", 15, {"city": "Hangzhou"}, "identify")]).state
    assert "city" not in again.traits


def test_a_more_trusted_source_wins_over_a_newer_statement():
    state = run(ProfileState("p1"), [ev("1", 1, {"name": "Li Lei"}, "identify", source="crm")]).state
    newer = run(state, [ev("2", 30, {"name": "lilei88"}, "identify", source="web")]).state
    assert newer.traits["name"] == "Li Lei"
    pos = run(newer, [ev("3", 0, {"name": "LI Lei"}, "identify", source="crm")]).state
    assert pos.traits["name"] == "Li Lei"  # same source, older: loses


def test_second_order_tags_repurchase_and_upgrades_the_tier_in_one_change():
    first = run(ProfileState("p1"), [order("o1", 1, "A", 80.00)], {})
    assert first.state.tier == "" and "repurchase" not in first.state.tags
    assert first.state.lifecycle_stage == "new"
    orders = {o.order_id: o for o in first.orders}
    second = run(first.state, [order("o2", 5, "B", 40.00)], orders)
    state = second.state
    assert state.computed["order_count"] == 2 and state.computed["total_spent_minor"] == 12000
    assert "repurchase" in state.tags and state.tier == "silver"
    kinds = {(t.kind, t.to_value, t.direction, t.cause) for t in second.transitions}
    assert ("tag_added", "repurchase", "", "rule:repurchase") in kinds
    assert ("tier", "silver", "upgrade", "event") in kinds
    assert state.points_balance == 120


def test_refund_lowers_spend_clv_points_and_can_downgrade():
    first = run(ProfileState("p1"), [order("o1", 1, "A", 150.00)], {})
    orders = {o.order_id: o for o in first.orders}
    assert first.state.tier == "silver" and first.state.points_balance == 150
    refund = run(first.state, [ev("r1", 10, event="Order Refunded", order_id="A", total=100.00)], orders)
    state = refund.state
    assert state.computed["total_spent_minor"] == 5000
    assert state.computed["clv_historical_minor"] == 5000
    assert state.computed["refunded_minor"] == 10000
    assert state.points_balance == 50
    assert state.tier == ""
    assert any(t.kind == "tier" and t.direction == "downgrade" for t in refund.transitions)
    assert [e.kind for e in refund.ledger] == ["refund"]
    assert refund.orders[0].status == "partially_refunded"


def test_refund_before_the_order_arrives_is_applied_when_it_does():
    refund = run(ProfileState("p1"), [ev("r1", 10, event="Order Refunded", order_id="A")], {})
    assert refund.orders[0].status == "pending" and refund.state.computed["order_count"] == 0
    orders = {o.order_id: o for o in refund.orders}
    completed = run(refund.state, [order("o1", 1, "A", 99.00)], orders)
    assert completed.orders[0].status == "refunded"
    assert completed.state.computed["order_count"] == 0 and completed.state.points_balance == 0


def test_dormant_exactly_at_the_threshold_and_the_timer_says_when():
    first = run(ProfileState("p1"), [order("o1", 0, "A", 10.00)], {}, now=T0)
    due = first.next_due
    assert due == T0 + timedelta(days=30)  # new -> active first
    orders = first.orders
    active = domain.recompute(first.state, SETTINGS, due, orders, "time")
    assert active.state.lifecycle_stage == "active"
    assert active.next_due == T0 + timedelta(days=180)
    before = domain.recompute(
        active.state, SETTINGS, T0 + timedelta(days=180) - timedelta(microseconds=1), orders, "time"
    )
    assert before.state.lifecycle_stage == "active" and not before.transitions
    dormant = domain.recompute(active.state, SETTINGS, T0 + timedelta(days=180), orders, "time")
    assert dormant.state.lifecycle_stage == "dormant"
    assert [(t.kind, t.from_value, t.to_value, t.cause) for t in dormant.transitions] == [
        ("lifecycle_stage", "active", "dormant", "time")
    ]


def test_points_redeem_oldest_first_never_negative_and_expire():
    state = ProfileState("p1")
    state = domain.change_points(state, "earn", 100, "a", "", SETTINGS, T0).state
    state = domain.change_points(state, "earn", 50, "b", "", SETTINGS, T0 + timedelta(days=10)).state
    state = domain.change_points(state, "redeem", 120, "c", "", SETTINGS, T0 + timedelta(days=11)).state
    assert [(lot["ref"], lot["points"]) for lot in state.points_lots] == [("b", 30)]
    with pytest.raises(domain.InsufficientPoints):
        domain.change_points(state, "redeem", 31, "d", "", SETTINGS, T0 + timedelta(days=12))
    expired = domain.recompute(state, SETTINGS, T0 + timedelta(days=375), [], "time")
    assert expired.state.points_balance == 0
    assert [(e.kind, e.points) for e in expired.ledger] == [("expire", -30)]


def test_manual_tags_expire_and_consent_keeps_the_newest_statement():
    tagged = domain.modify_tags(ProfileState("p1"), [("vip", T0 + timedelta(days=1))], [], "manual", SETTINGS, T0)
    assert tagged.changed["tags"] == ["vip"] and tagged.next_due == T0 + timedelta(days=1)
    gone = domain.recompute(tagged.state, SETTINGS, T0 + timedelta(days=1), [], "time")
    assert "vip" not in gone.state.tags and gone.transitions[0].kind == "tag_removed"
    consent = domain.update_consent(ProfileState("p1"), "email", "marketing", True, "api", T0, SETTINGS, T0).state
    older = domain.update_consent(consent, "email", "marketing", False, "api", T0 - timedelta(days=1), SETTINGS, T0)
    assert older.state.consent["email.marketing"]["granted"] is True
    out = domain.unsubscribe(consent, "email", "link", T0 + timedelta(hours=1), SETTINGS, T0)
    assert out.changed == {"consent.email": False, "consent.email.marketing": False}


def test_merge_keeps_each_trait_by_provenance_and_adds_up():
    a = run(ProfileState("p1"), [ev("1", 1, {"city": "Beijing"}, "identify"), order("o1", 2, "A", 60.00)], {})
    b_state = ProfileState("p2")
    b = apply_events(b_state, [ev("2", 9, {"city": "Shanghai"}, "identify")], SETTINGS, T0 + timedelta(hours=1), {})
    b.state.person_id = "p2"
    orders = [Order(**{**o.__dict__, "person_id": "p1"}) for o in a.orders]
    merged = domain.merge_states(a.state, [b.state], SETTINGS, T0 + timedelta(hours=2), orders)
    assert merged.state.traits["city"] == "Shanghai"
    assert merged.state.event_count == 3
    assert merged.state.points_balance == a.state.points_balance == 60


def test_money_and_regions():
    assert domain.money_minor("19.99", "CNY") == 1999
    assert domain.money_minor(500, "JPY") == 500
    assert domain.money_minor("nan", "CNY") is None
    state = run(ProfileState("p1"), [ev("1", 1, {"address": "浙江省杭州市西湖区文三路 1 号"}, "identify")]).state
    assert state.computed["region_code"] == "330106"


def test_differs_tells_1_from_true_and_0_from_false_at_any_depth():
    from cdp_profile.domain import differs

    assert differs(1, True) and differs(0, False) and differs({"a": [1]}, {"a": [True]})
    assert differs({"a": {"b": 0}}, {"a": {"b": False}}) and differs([1, 2], [1])
    assert not differs(1, 1.0) and not differs({"a": [True, "x"]}, {"a": [True, "x"]}) and not differs(None, None)


def test_structs_built_in_place_keep_empty_objects_and_the_first_usable_key():
    from google.protobuf import struct_pb2

    from cdp_profile.consumers import describe
    from cdp_profile.structs import to_dict, to_struct

    values = {"a": {}, "b": {"c": {}, "d": [1, "x"]}, "e": None, "f": 2.5}
    assert to_dict(to_struct(values)) == {"a": {}, "b": {"c": {}, "d": [1, "x"]}, "e": None, "f": 2.5}
    properties, context = struct_pb2.Struct(), struct_pb2.Struct()
    properties.update({"store_id": "", "storeId": "s-2", "channel": 7})
    context.update({"store_id": "s-9", "staff_id": "st-1", "source": "pos", "page": {"path": "/"}})
    # Properties before context; an empty value gives way to the next key; a store makes the channel.
    assert describe("track", properties, context) == ("store", "s-2", "st-1", "pos")
