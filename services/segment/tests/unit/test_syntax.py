"""The text syntax round-trips and its errors say where and what."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings

from cdp_segment.rules.ast import (
    All,
    EventCond,
    FieldCond,
    Member,
    Not,
    Op,
    OrderCond,
    PropFilter,
    Window,
    normalise,
)
from cdp_segment.rules.syntax import RuleSyntaxError, parse, render
from cdp_segment.rules.validate import RuleError, validate

from ..rule_strategies import rules


@settings(max_examples=400, deadline=None)
@given(rules)
def test_print_then_parse_gives_the_same_rule(rule):
    assert parse(render(rule)) == normalise(rule)


@settings(max_examples=200, deadline=None)
@given(rules)
def test_printing_is_canonical(rule):
    text = render(rule)
    assert render(parse(text)) == text


def test_the_issue_example_parses_to_the_intended_rule():
    rule = parse(
        'orders.count(within 30d) >= 2 and order.store.tag = "low-performing"'
        ' and not event("Store Visited", within 180d)'
    )
    assert rule == All(
        (
            OrderCond("count", Op.GTE, Decimal(2), Window(within_days=30)),
            OrderCond("count", Op.GTE, Decimal(1), store_tag="low-performing"),
            Not(EventCond("Store Visited", window=Window(within_days=180))),
        )
    )


def test_precedence_not_then_and_then_or():
    assert render(parse('tier = "a" or tier = "b" and not tags exists')) == (
        'tier = "a" or (tier = "b" and not tags exists)'
    )
    assert parse('not (tier = "a" or tier = "b")') == Not(parse('tier = "a" or tier = "b"'))


def test_dates_windows_and_unicode():
    rule = parse(
        'event("加购", between 2025-06-01 and 2025-06-18T16:00Z, where sku in ["A", "B"]) >= 2 and segment("vip")'
    )
    event = rule.items[0]
    assert event.window == Window(start=datetime(2025, 6, 1, tzinfo=UTC), end=datetime(2025, 6, 18, 16, tzinfo=UTC))
    assert rule.items[1] == Member("vip")
    assert FieldCond("traits.城市", Op.EQ, ("上海",)) == parse('traits.城市 = "上海"')


@pytest.mark.parametrize(
    ("text", "line", "column", "expected"),
    [
        ("", 1, 1, "a condition"),
        ("traits.age >", 1, 13, "a value"),
        ("traits.age > 3 and", 1, 19, "a condition"),
        ('event("x", within 3x)', 1, 19, "a number of days"),
        ("orders.count(within 30d) >= ", 1, 29, "a number"),
        ('(tier = "a"', 1, 12, "')'"),
        ('tier = "a"\n  and tier ~ "b"', 2, 12, "an operator"),
        ('traits.x = "open', 1, 12, "a string closed by"),
        ('orders.count(store.tag = "a", store.tag = "b") > 1', 1, 31, "store.tag at most once"),
        ('event("x", between 2025-02-30 and 2025-03-01)', 1, 20, "a valid calendar date"),
        ("traits.a = 1 traits.b = 2", 1, 14, "'and', 'or' or end of rule"),
    ],
)
def test_syntax_errors_name_the_position_and_what_was_expected(text, line, column, expected):
    with pytest.raises(RuleSyntaxError) as error:
        parse(text)
    assert (error.value.line, error.value.column) == (line, column), str(error.value)
    assert error.value.expected.startswith(expected), str(error.value)
    assert f"line {line}, column {column}: expected" in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("shoe_size = 42", "unknown field"),
        ('tags = "vip"', "tags"),
        ("consent.email = 1", "consent"),
        ('tier < "b"', "compares with strings"),
        ('traits.a between 1 and "z"', "two numbers or two strings"),
        ("traits.a within last 0d", "between 1 and"),
        ('event("x", within 0d)', "window"),
        ('event("x", between 2025-06-02 and 2025-06-01)', "start must come before"),
        ('segment("Not An Id")', "not a segment id"),
        ("lifecycle_stage more than 3d ago", "compares with strings"),
        ('traits.a = 1 and event("x", where price within last 3d)', "a value comparison"),
        ('orders.count(product.category = "outdoor/") >= 1', "no empty parts"),
        ('traits.a = "\\u0000"', "NUL"),
        ("points_balance exists", "ask 'points_balance > 0'"),
        ("not points_balance exists", "0 without points"),
    ],
)
def test_meaningless_rules_are_refused_with_a_reason(text, message):
    with pytest.raises(RuleError, match=message):
        parse(text)


def test_a_consent_condition_names_its_channel():
    with pytest.raises(RuleError, match="channel"):
        validate(FieldCond("consent.", Op.EQ, (True,)))


def test_stored_rules_are_read_without_checks_added_since():
    text = 'orders.count(product.category = "outdoor/") >= 1'
    assert parse(text, checked=False).item.category == "outdoor/"
    assert parse("points_balance exists", checked=False) == FieldCond("points_balance", Op.EXISTS)


def test_limits():
    deep = "not " * 40 + 'tier = "a"'
    with pytest.raises(RuleError, match="deeper"):
        parse(deep)
    with pytest.raises(RuleSyntaxError):
        parse('tier = "a" and ' * 2000 + 'tier = "a"')


SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_dates_without_an_offset_are_in_the_given_zone_and_print_with_theirs():
    rule = parse("orders.count(between 2026-06-01 and 2026-06-19T10:30) >= 1", SHANGHAI)
    assert rule.window == Window(
        start=datetime(2026, 5, 31, 16, tzinfo=UTC), end=datetime(2026, 6, 19, 2, 30, tzinfo=UTC)
    )
    assert render(rule, SHANGHAI) == "orders.count(between 2026-06-01+08:00 and 2026-06-19T10:30+08:00) >= 1"
    assert render(rule) == "orders.count(between 2026-05-31T16:00Z and 2026-06-19T02:30Z) >= 1"
    # an explicit offset wins over the zone
    assert parse("orders.count(between 2026-06-01Z and 2026-06-01T05:00-05:00) >= 1", SHANGHAI).window == Window(
        start=datetime(2026, 6, 1, tzinfo=UTC), end=datetime(2026, 6, 1, 10, tzinfo=UTC)
    )


def test_microseconds_early_years_and_any_name_round_trip():
    window = Window(start=datetime(999, 6, 1, tzinfo=UTC), end=datetime(2026, 6, 1, 0, 0, 0, 1, tzinfo=UTC))
    rule = All(
        (
            OrderCond("count", Op.GTE, Decimal(1), window),
            FieldCond("traits.first-name", Op.EXISTS),
            FieldCond("computed.1st", Op.EQ, ("a",)),
            EventCond("Viewed", (PropFilter("utm-source", Op.EQ, ("ad",)),)),
        )
    )
    text = render(rule)
    assert text == (
        "orders.count(between 0999-06-01Z and 2026-06-01T00:00:00.000001Z) >= 1"
        ' and traits."first-name" exists and computed."1st" = "a"'
        ' and event("Viewed", where "utm-source" = "ad")'
    )
    assert parse(text) == normalise(rule)
