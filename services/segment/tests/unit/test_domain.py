"""Pure parts of the live path: which segments a change can affect, dependants in order,
cycles, profile state diffs, the 8-group RFM model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cdp_segment.domain import (
    EVERYTHING,
    Catalogue,
    Definition,
    ProfileState,
    check_references,
    dependants_of,
    dependency_order,
    find_cycle,
)
from cdp_segment.rfm import RfmThresholds, next_regroup, rfm_group
from cdp_segment.rules.data import EventFact, PersonFacts, WorkspaceFacts
from cdp_segment.rules.syntax import parse
from cdpkit.errors import InvalidArgument

NOW = datetime(2026, 6, 18, 12, tzinfo=UTC)


def catalogue(**rules: str) -> Catalogue:
    return Catalogue(Definition.of(sid.replace("_", "-"), 1, parse(rule)) for sid, rule in rules.items())


def test_only_segments_reading_a_changed_field_are_picked():
    c = catalogue(
        gold='tier = "gold"',
        city='traits.city = "上海"',
        visits='event("Store Visited", within 180d)',
        buyers="orders.count() >= 1",
        low_store='order.store.tag = "low-performing"',
        nested='segment("gold") and tags contains "vip"',
    )
    assert c.reading({"tier"}) == {"gold"}
    assert c.reading({"traits.city", "traits.age"}) == {"city"}
    assert c.reading({"events:Store Visited"}) == {"visits"}
    assert c.reading({"events:Page Viewed", "points_balance"}) == set()
    assert c.reading({"orders"}) == {"buyers", "low-store"}
    assert c.reading({"object_tags:store"}) == {"low-store"}
    assert c.reading({"tags"}) == {"nested"}
    assert c.reading({EVERYTHING}) == set(c.by_id)
    assert c.needs({"visits"}, NOW) == ({"Store Visited": NOW - timedelta(days=180)}, False)
    assert c.needs({"gold"}, NOW) == ({}, False)  # its dependant reads no events either


def test_events_are_needed_from_the_earliest_window_that_reads_them():
    c = catalogue(
        week='event("Viewed", within 7d)',
        june='event("Viewed", between 2026-06-01 and 2026-06-19) and event("Bought", within 30d)',
        ever='event("Bought") >= 3',
    )
    assert c.needs({"week"}, NOW) == ({"Viewed": NOW - timedelta(days=7)}, False)
    assert c.needs({"week", "june"}, NOW) == (
        {"Viewed": datetime(2026, 6, 1, tzinfo=UTC), "Bought": NOW - timedelta(days=30)},
        False,
    )
    assert c.needs({"june", "ever"}, NOW)[0]["Bought"] is None


def test_a_membership_change_reevaluates_dependants_after_their_dependency():
    c = catalogue(a="orders.count() >= 1", b='segment("a") and tier = "gold"', c='not segment("b")', d='tier = "gold"')
    assert [d.segment_id for d in c.order].index("a") < [d.segment_id for d in c.order].index("b")
    person = PersonFacts("p", tier="gold", memberships=frozenset({"c"}))
    from cdp_segment.rules.data import OrderFact

    person.orders.append(OrderFact("o", NOW - timedelta(days=1), 100))
    outcome = c.evaluate(person, WorkspaceFacts(), NOW, {"a"})
    assert [(m.segment_id, m.entered) for m in outcome.changes] == [("a", True), ("b", True), ("c", False)]
    assert person.memberships == frozenset({"a", "b"})
    assert outcome.timers == {}  # nothing windowed


def test_windowed_segments_get_their_next_change():
    c = catalogue(visits='event("Store Visited", within 180d)')
    visit = NOW - timedelta(days=10)
    person = PersonFacts("p", events=[EventFact("Store Visited", visit)])
    outcome = c.evaluate(person, WorkspaceFacts(), NOW, {"visits"})
    assert [m.entered for m in outcome.changes] == [True]
    assert outcome.timers == {"visits": visit + timedelta(days=180)}


def test_cycles_and_missing_references_are_named():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}, "a") == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}, "a") is None
    others = {"x": parse('segment("y")'), "y": parse("tier exists")}
    with pytest.raises(InvalidArgument, match=r"cycle: y -> x -> y"):
        check_references("y", parse('segment("x")'), others, "segment.rule")
    with pytest.raises(InvalidArgument, match=r'segment\("z"\) does not exist'):
        check_references("w", parse('segment("z")'), others, "segment.rule")
    assert dependency_order({"b": {"a"}, "a": set(), "c": {"b"}}) == ["a", "b", "c"]
    assert dependants_of({"b": {"a"}, "a": set(), "c": {"b"}, "d": set()}, ["a"]) == ["b", "c"]


def test_profile_state_diff_names_changed_fields():
    before = ProfileState(traits={"city": "上海"}, computed={"order_count": 1}, tier="gold", consent={"sms": True})
    after = ProfileState(
        traits={"city": "杭州"},
        pii_traits=frozenset({"email"}),
        computed={"order_count": Decimal(1)},
        tier="gold",
        tags=frozenset({"vip"}),
        consent={"sms": False},
    )
    assert before.changed_fields(after) == {"traits.city", "traits.email", "tags", "consent.sms"}
    assert before.with_values({"tier": "silver", "traits.city": None, "computed.x": 2}) == ProfileState(
        traits={}, computed={"order_count": 1, "x": 2}, tier="silver", consent={"sms": True}
    )


def _thresholds(method: str, r, f, m, high: int = 4) -> RfmThresholds:
    return RfmThresholds(method, high, tuple(map(Decimal, r)), tuple(map(Decimal, f)), tuple(map(Decimal, m)), 100, NOW)


# The RFM model's table (docs/segment.md), written out here rather than read from rfm.GROUPS.
EIGHT_GROUPS = [
    (True, True, True, "重要价值"),
    (True, False, True, "重要发展"),
    (False, True, True, "重要保持"),
    (False, False, True, "重要挽留"),
    (True, True, False, "一般价值"),
    (True, False, False, "一般发展"),
    (False, True, False, "一般保持"),
    (False, False, False, "一般挽留"),
]


@pytest.mark.parametrize(("recent", "frequent", "big", "group"), EIGHT_GROUPS)
def test_the_eight_rfm_groups_against_the_mean(recent, frequent, big, group):
    mean = _thresholds("mean", [30 * 86400], ["2.5"], ["50000"])
    computed = {
        "last_order_time": (NOW - timedelta(days=10 if recent else 60)).isoformat(),
        "order_count": 3 if frequent else 2,
        "total_spent_minor": 50001 if big else 50000,
    }
    assert rfm_group(computed, mean, NOW) == group


def test_rfm_quintile_scores_and_non_customers():
    cuts = _thresholds("quintile", [86400 * d for d in (7, 30, 90, 180)], [1, 1, 2, 4], [100, 200, 300, 400])
    computed = {"last_order_time": (NOW - timedelta(days=20)).isoformat(), "order_count": 3, "total_spent_minor": 250}
    # R: 20 days is below 2 cut points (30d, 90d... -> 3 cuts: 30, 90, 180) -> score 4: high.
    # F: 3 beats 1, 1, 2 -> score 4: high. M: 250 beats 100, 200 -> score 3: low.
    assert rfm_group(computed, cuts, NOW) == "一般价值"
    assert rfm_group(computed, _thresholds("quintile", cuts.recency_seconds, [1, 1, 2, 4], [1, 2, 3, 4], 3), NOW) == (
        "重要价值"
    )
    assert rfm_group({"order_count": 0}, cuts, NOW) is None
    assert rfm_group({**computed, "last_order_time": "yesterday"}, cuts, NOW) is None
    assert rfm_group(computed, None, NOW) is None


def test_values_without_a_snapshot_keep_pii_traits_apart():
    before = ProfileState(traits={"city": "上海"}, pii_traits=frozenset({"phone"}))
    after = before.with_values({"traits.phone": None, "traits.email": True, "traits.vip": True}, frozenset({"email"}))
    assert after.pii_traits == {"email"}
    assert after.traits == {"city": "上海", "vip": True}


def test_true_is_not_1_and_false_is_not_0_in_changed_fields():
    assert ProfileState(traits={"a": 1, "b": 0}).changed_fields(ProfileState(traits={"a": True, "b": False})) == {
        "traits.a",
        "traits.b",
    }


@pytest.mark.parametrize(("high_score", "days"), [(2, 180), (3, 90), (4, 30), (5, 7)])
def test_the_next_regroup_is_where_recency_stops_being_high(high_score, days):
    cuts = _thresholds(
        "quintile", [86400 * d for d in (30, 7, 180, 90)], [1, 1, 2, 4], [100, 200, 300, 400], high_score
    )
    last = NOW - timedelta(days=3)
    computed = {"last_order_time": last.isoformat(), "order_count": 9, "total_spent_minor": 900}
    due = next_regroup(computed, cuts, NOW)
    assert due == last + timedelta(days=days)
    assert rfm_group(computed, cuts, due - timedelta(microseconds=1)) == "重要价值"
    assert rfm_group(computed, cuts, due) == "重要保持"
    assert next_regroup(computed, cuts, due) is None
