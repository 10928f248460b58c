"""Hypothesis strategies for rules and for people: shared by the syntax and agreement tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import strategies as st

from cdp_segment.rules.ast import (
    COMPARISONS,
    All,
    Any_,
    EventCond,
    FieldCond,
    ItemFilter,
    Member,
    Not,
    Op,
    OrderCond,
    PropFilter,
    Window,
)
from cdp_segment.rules.data import EventFact, ItemFact, OrderFact, PersonFacts, WorkspaceFacts

NOW = datetime(2026, 6, 18, 12, 0, tzinfo=UTC)
KEYS = ("a", "b", "city", "d")
STRINGS = ("", "a", "ab", "b", "B", "上海", "2026-06-01", "2026-06-18T11:00:00Z")
TAGS = ("vip", "low-performing", "x")
SEGMENTS = ("seg-a", "seg-b")
EVENT_NAMES = ("View", "Buy")

numbers = st.one_of(
    st.integers(-5, 20).map(Decimal),
    st.sampled_from([Decimal("0.5"), Decimal("1.25"), Decimal("-0.5"), Decimal("10.0")]),
)
strings = st.sampled_from(STRINGS)
scalars = st.one_of(numbers, strings, st.booleans())

# JSON values as stored in traits (numbers as Decimal, as read back from jsonb)
times_iso = st.one_of(
    st.integers(-400 * 24, 48).map(lambda h: (NOW + timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.integers(-400, 2).map(lambda d: (NOW + timedelta(days=d)).strftime("%Y-%m-%d")),
    st.sampled_from(["2026-02-30", "2026-06-18T25:00:00Z", "yesterday", "2026-06-18T10:00:00+08:00"]),
    # nanoseconds (protobuf Timestamps): truncated to microseconds by both evaluators; the
    # first sits 0.9 us after "now - 90d", where rounding and truncation would disagree
    st.sampled_from(["2026-03-20T12:00:00.000000900Z", "2026-06-11T12:00:00.123456789Z"]),
)
json_scalars = st.one_of(st.none(), numbers, strings, st.booleans(), times_iso)
json_values = st.one_of(json_scalars, st.lists(st.one_of(numbers, strings), max_size=3))
field_maps = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=4)

days = st.sampled_from([1, 7, 30, 90, 365])
windows = st.one_of(
    st.none(),
    days.map(lambda d: Window(within_days=d)),
    st.tuples(st.integers(-400, 0), st.integers(1, 200)).map(
        lambda t: Window(start=NOW + timedelta(days=t[0]), end=NOW + timedelta(days=t[0] + t[1]))
    ),
)


def _operands(op: Op):
    if op is Op.EXISTS:
        return st.just(())
    if op is Op.BETWEEN:
        return st.one_of(st.tuples(numbers, numbers), st.tuples(strings, strings))
    if op is Op.IN:
        return st.lists(scalars, min_size=1, max_size=3).map(tuple)
    if op in (Op.CONTAINS, Op.STARTS_WITH):
        return strings.map(lambda s: (s,))
    if op in (Op.LT, Op.LTE, Op.GT, Op.GTE):
        return st.one_of(numbers, strings).map(lambda v: (v,))
    return scalars.map(lambda v: (v,))


value_ops = st.sampled_from([o for o in Op if o not in (Op.WITHIN_LAST, Op.MORE_THAN_AGO)])


@st.composite
def field_conditions(draw):
    kind = draw(st.sampled_from(["traits", "computed", "scalar", "tags", "consent", "relative", "points"]))
    if kind in ("traits", "computed"):
        op = draw(value_ops)
        return FieldCond(f"{kind}.{draw(st.sampled_from(KEYS))}", op, draw(_operands(op)))
    if kind == "relative":
        op = draw(st.sampled_from([Op.WITHIN_LAST, Op.MORE_THAN_AGO]))
        return FieldCond(
            f"{draw(st.sampled_from(['traits', 'computed']))}.{draw(st.sampled_from(KEYS))}", op, (), draw(days)
        )
    if kind == "scalar":
        op = draw(st.sampled_from([Op.EQ, Op.NEQ, Op.IN, Op.EXISTS, Op.STARTS_WITH]))
        operands = draw(_operands(op).filter(lambda vs: all(isinstance(v, str) for v in vs)))
        return FieldCond(draw(st.sampled_from(["lifecycle_stage", "tier", "rfm_group"])), op, operands)
    if kind == "points":
        op = draw(st.sampled_from([o for o in COMPARISONS] + [Op.BETWEEN, Op.IN, Op.EXISTS]))
        operands = draw(_operands(op).filter(lambda vs: all(isinstance(v, Decimal) for v in vs)))
        return FieldCond("points_balance", op, operands)
    if kind == "tags":
        if draw(st.booleans()):
            return FieldCond("tags", Op.EXISTS)
        return FieldCond("tags", Op.CONTAINS, (draw(st.sampled_from(TAGS)),))
    op = draw(st.sampled_from([Op.EQ, Op.NEQ, Op.EXISTS]))
    return FieldCond("consent.email", op, () if op is Op.EXISTS else (draw(st.booleans()),))


@st.composite
def prop_filters(draw):
    op = draw(value_ops)
    return PropFilter(draw(st.sampled_from(["sku", "price"])), op, draw(_operands(op)))


event_conditions = st.builds(
    EventCond,
    name=st.sampled_from(EVENT_NAMES),
    filters=st.lists(prop_filters(), max_size=2).map(tuple),
    window=windows,
    count_op=st.sampled_from(COMPARISONS),
    count=st.integers(0, 3),
)
item_filters = st.one_of(
    st.none(),
    st.builds(
        ItemFilter,
        sku=st.sampled_from(["", "A-1", "B-2"]),
        category=st.sampled_from(["", "outdoor", "outdoor/poles"]),
        product_tag=st.sampled_from(["", "model-a"]),
    ).filter(lambda i: i.sku or i.category or i.product_tag),
)
order_conditions = st.builds(
    OrderCond,
    aggregate=st.sampled_from(["count", "sum", "avg"]),
    op=st.sampled_from(COMPARISONS),
    value=st.one_of(st.integers(0, 3).map(Decimal), st.sampled_from([Decimal(1000), Decimal(2500), Decimal("1999.5")])),
    window=windows,
    item=item_filters,
    store_tag=st.sampled_from(["", "low-performing"]),
    staff_tag=st.sampled_from(["", "star"]),
)
leaves = st.one_of(field_conditions(), event_conditions, order_conditions, st.sampled_from(SEGMENTS).map(Member))
rules = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, min_size=2, max_size=3).map(lambda xs: All(tuple(xs))),
        st.lists(children, min_size=2, max_size=3).map(lambda xs: Any_(tuple(xs))),
        children.map(Not),
    ),
    max_leaves=6,
)

event_times = st.integers(-400 * 24, 24).map(lambda h: NOW + timedelta(hours=h))
event_facts = st.builds(
    EventFact,
    name=st.sampled_from(EVENT_NAMES),
    time=event_times,
    properties=st.dictionaries(st.sampled_from(["sku", "price"]), json_scalars, max_size=2),
    message_id=st.uuids().map(str),
)
item_facts = st.builds(
    ItemFact,
    sku=st.sampled_from(["A-1", "B-2", ""]),
    category=st.sampled_from(["outdoor", "outdoor/poles", "outdoor/poles/carbon", "outdoorsy", "food"]),
    product_id=st.sampled_from(["p1", "p2", "p3"]),
)
order_facts = st.builds(
    OrderFact,
    order_id=st.uuids().map(str),
    time=event_times,
    total_minor=st.integers(0, 5000),
    status=st.sampled_from(["completed", "completed", "refunded", "cancelled"]),
    store_id=st.sampled_from(["s1", "s2", ""]),
    staff_id=st.sampled_from(["e1", ""]),
    items=st.lists(item_facts, max_size=3).map(tuple),
)
people = st.builds(
    PersonFacts,
    person_id=st.uuids().map(str),
    traits=field_maps,
    computed=field_maps,
    lifecycle_stage=st.sampled_from([None, "new", "active", "a"]),
    tier=st.sampled_from([None, "gold", "ab"]),
    rfm_group=st.sampled_from([None, "重要价值", "a"]),
    tags=st.frozensets(st.sampled_from(TAGS), max_size=2),
    consent=st.dictionaries(st.just("email"), st.booleans(), max_size=1),
    points_balance=st.one_of(st.none(), st.integers(-5, 20)),
    pii_traits=st.frozensets(st.sampled_from(KEYS), max_size=2),
    events=st.lists(event_facts, max_size=4),
    orders=st.lists(order_facts, max_size=3),
    memberships=st.frozensets(st.sampled_from(SEGMENTS), max_size=2),
)
workspaces = st.builds(
    WorkspaceFacts,
    object_tags=st.dictionaries(
        st.sampled_from([("store", "s1"), ("store", "s2"), ("staff", "e1"), ("product", "p1"), ("product", "p2")]),
        st.frozensets(st.sampled_from(["low-performing", "star", "model-a"]), min_size=1, max_size=2),
        max_size=4,
    ),
)


def fresh_workspace() -> str:
    return f"w{uuid.uuid4().hex[:12]}"
