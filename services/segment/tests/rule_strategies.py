"""Hypothesis strategies for rules and for people: shared by the syntax and agreement tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

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
# Names the text form must quote ("first-name", "1st") next to bare ones.
KEYS = ("a", "b", "city", "d", "first-name")
# Rule literals: "#" strings once meant numbers in the proto form; U+FFFD is what a NUL in data
# becomes (a NUL in a rule literal is refused).
STRINGS = ("", "a", "ab", "b", "B", "上海", "2026-06-01", "2026-06-18T11:00:00Z", "#1", "#vip", "a\ufffdb")
# Data strings also carry NULs (announced values: stored as U+FFFD by both paths).
DATA_STRINGS = (*STRINGS, "a\x00b", "\x00")
TAGS = ("vip", "low-performing", "x")
SEGMENTS = ("seg-a", "seg-b")
EVENT_NAMES = ("View", "Buy")
DAYS = (1, 7, 30, 90, 365)
OFFSETS = ("Z", "+08:00", "-05:00", "+14:00", "-12:00", "+05:45", "")
# Workspace time zones (where a date-only value without an offset starts): both sides of UTC,
# odd offsets, daylight saving time, and the date line.
ZONES = ("UTC", "Asia/Shanghai", "America/New_York", "Asia/Kathmandu", "America/St_Johns", "Pacific/Kiritimati")

numbers = st.one_of(
    st.integers(-5, 20).map(Decimal),
    st.sampled_from([Decimal("0.5"), Decimal("1.25"), Decimal("-0.5"), Decimal("10.0"), Decimal("1E+300")]),
)
strings = st.sampled_from(STRINGS)
scalars = st.one_of(numbers, strings, st.booleans())


def _iso(moment: datetime, offset: str) -> str:
    """``moment`` written in the zone ``offset`` ("" = no zone: UTC), with microseconds when it has any."""
    if offset in ("", "Z"):
        local = moment.astimezone(UTC)
    else:
        sign = -1 if offset[0] == "-" else 1
        local = moment.astimezone(timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))))
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + (f".{local.microsecond:06d}" if local.microsecond else "")
    return text + ("Z" if offset == "Z" else offset)


# Times as traits hold them: ISO strings in every shape both evaluators read (or refuse).
times_iso = st.one_of(
    st.builds(_iso, st.integers(-400 * 24, 48).map(lambda h: NOW + timedelta(hours=h)), st.sampled_from(OFFSETS)),
    # date only, with or without an offset (midnight at that offset), often next to a window edge
    st.builds(
        lambda d, offset: (NOW + timedelta(days=d)).strftime("%Y-%m-%d") + offset,
        st.one_of(st.integers(-400, 2), st.sampled_from(DAYS).flatmap(lambda n: st.sampled_from([-n - 1, -n, 1 - n]))),
        st.sampled_from(OFFSETS),
    ),
    # one microsecond either side of a window edge, in any zone
    st.builds(
        lambda d, us, offset: _iso(NOW - timedelta(days=d) + timedelta(microseconds=us), offset),
        st.sampled_from(DAYS),
        st.sampled_from([-1, 0, 1]),
        st.sampled_from(OFFSETS),
    ),
    st.sampled_from(
        [
            "2026-02-30",
            "2026-06-18T25:00:00Z",
            "yesterday",
            "2026-06-18T10:00:00+08:00",
            # the far future: a time until 9999-12-31 23:59:59.999999 UTC, not one after
            "9999-12-20",
            "9999-12-31T23:59:59.999999Z",
            "9999-12-31T23:00-05:00",
            "1000-01-01T00:00+14:00",
            # date-only at the ends of time: in the workspace zone these may fall outside 1-9999 UTC
            "0001-01-01",
            "9999-12-31",
            "1000-01-01",
            # nanoseconds (protobuf Timestamps): truncated to microseconds by both evaluators; the
            # first sits 0.9 us after "now - 90d", where rounding and truncation would disagree
            "2026-03-20T12:00:00.000000900Z",
            "2026-06-11T12:00:00.123456789Z",
        ]
    ),
)
json_scalars = st.one_of(st.none(), numbers, st.sampled_from(DATA_STRINGS), st.booleans(), times_iso)
json_values = st.one_of(json_scalars, st.lists(st.one_of(numbers, st.sampled_from(DATA_STRINGS)), max_size=3))
field_maps = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=4)

days = st.sampled_from(DAYS)
# Instants a "between" window may start or end at: midnights, hours, and single microseconds.
window_instants = st.one_of(
    st.builds(
        lambda d, h, us: NOW + timedelta(days=d, hours=h, microseconds=us),
        st.integers(-400, 1),
        st.sampled_from([0, -12, 5, -8]),
        st.sampled_from([0, 0, 1, -1, 500000]),
    ),
    st.sampled_from([datetime(999, 6, 1, tzinfo=UTC), datetime(1, 1, 2, tzinfo=UTC)]),
)
windows = st.one_of(
    st.none(),
    days.map(lambda d: Window(within_days=d)),
    st.tuples(window_instants, window_instants)
    .filter(lambda t: t[0] != t[1])
    .map(lambda t: Window(start=min(t), end=max(t))),
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
        # no 'exists': everyone has a balance, so validation refuses it
        op = draw(st.sampled_from([o for o in COMPARISONS] + [Op.BETWEEN, Op.IN]))
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
    return PropFilter(draw(st.sampled_from(["sku", "price", "utm-source"])), op, draw(_operands(op)))


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

event_times = st.one_of(
    st.integers(-400 * 24, 24).map(lambda h: NOW + timedelta(hours=h)),
    # on a "within Nd" edge, or one microsecond either side
    st.builds(
        lambda d, us: NOW - timedelta(days=d, microseconds=us), st.sampled_from(DAYS), st.sampled_from([-1, 0, 1])
    ),
    st.sampled_from([datetime(9999, 12, 31, 12, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)]),
)
event_facts = st.builds(
    EventFact,
    name=st.sampled_from(EVENT_NAMES),
    time=event_times,
    properties=st.dictionaries(st.sampled_from(["sku", "price", "utm-source", "a\x00"]), json_scalars, max_size=2),
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
    currency=st.sampled_from(["CNY", "CNY", "USD", ""]),
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
    currency=st.sampled_from(["CNY", "CNY", "USD"]),
)
workspaces = st.builds(
    WorkspaceFacts,
    object_tags=st.dictionaries(
        st.sampled_from([("store", "s1"), ("store", "s2"), ("staff", "e1"), ("product", "p1"), ("product", "p2")]),
        st.frozensets(st.sampled_from(["low-performing", "star", "model-a"]), min_size=1, max_size=2),
        max_size=4,
    ),
    zone=st.sampled_from(ZONES).map(ZoneInfo),
)


# The evaluators must agree at any moment, not only at noon UTC: midnight UTC puts date-only
# values with an offset right on the window edges.
nows = st.sampled_from(
    [
        NOW,
        NOW - timedelta(hours=12),
        NOW + timedelta(hours=5, minutes=45),
        NOW - timedelta(microseconds=1),
        # midnight in Shanghai and in New York (daylight saving): date-only values on the edges
        NOW + timedelta(hours=4),
        NOW - timedelta(hours=8),
    ]
)


def fresh_workspace() -> str:
    return f"w{uuid.uuid4().hex[:12]}"
