"""The next-change instant is never late: between now and it, membership cannot change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cdp_segment.rules.ast import EventCond, FieldCond, Op, Window
from cdp_segment.rules.data import EventFact, PersonFacts, WorkspaceFacts
from cdp_segment.rules.memory import evaluate
from cdp_segment.rules.timing import next_change

from ..rule_strategies import NOW, people, rules, workspaces


@settings(max_examples=400, deadline=None)
@given(rule=rules, person=people, workspace=workspaces, offsets=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8))
def test_membership_is_constant_until_the_next_change(rule, person, workspace, offsets):
    before = evaluate(rule, person, workspace, NOW)
    edge = next_change(rule, person, workspace, NOW)
    horizon = edge if edge is not None else NOW + timedelta(days=800)
    for fraction in offsets:
        moment = NOW + (horizon - NOW) * fraction
        if moment < horizon:
            assert evaluate(rule, person, workspace, moment) == before, (moment, edge)


def test_no_order_in_90_days_admits_exactly_when_90_days_pass():
    rule = FieldCond("computed.last_order_time", Op.MORE_THAN_AGO, (), 90)
    last_order = NOW - timedelta(days=10)
    person = PersonFacts("p", computed={"last_order_time": last_order.isoformat()})
    edge = next_change(rule, person, WorkspaceFacts(), NOW)
    assert edge == last_order + timedelta(days=90)
    assert not evaluate(rule, person, WorkspaceFacts(), edge - timedelta(microseconds=1))
    assert evaluate(rule, person, WorkspaceFacts(), edge)


def test_event_window_exit_is_the_edge():
    rule = EventCond("Store Visited", window=Window(within_days=180))
    visit = NOW - timedelta(days=179, hours=23)
    person = PersonFacts("p", events=[EventFact("Store Visited", visit)])
    assert next_change(rule, person, WorkspaceFacts(), NOW) == visit + timedelta(days=180)
    assert next_change(rule, PersonFacts("q"), WorkspaceFacts(), NOW) is None


def test_an_edge_past_the_year_9999_is_never_set_and_never_fails():
    person = PersonFacts(
        "p",
        traits={"d": "9999-12-20", "late": "9999-12-31T23:00-05:00"},
        events=[EventFact("Viewed", datetime(9999, 12, 31, 12, tzinfo=UTC))],
    )
    rule = FieldCond("traits.d", Op.WITHIN_LAST, (), 30)
    assert next_change(rule, person, WorkspaceFacts(), NOW) == datetime(9999, 12, 20, tzinfo=UTC)
    assert not evaluate(FieldCond("traits.late", Op.MORE_THAN_AGO, (), 1), person, WorkspaceFacts(), NOW)
    visited = EventCond("Viewed", window=Window(within_days=36500))
    assert next_change(visited, person, WorkspaceFacts(), NOW) == datetime(9999, 12, 31, 12, tzinfo=UTC)
