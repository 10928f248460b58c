"""Rules as data. Frozen, hashable, comparable: the printer and parser round-trip them."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

Scalar = str | Decimal | bool


class Op(enum.Enum):
    EQ = "="
    NEQ = "!="
    LT = "<"
    LTE = "<="
    GT = ">"
    GTE = ">="
    BETWEEN = "between"
    IN = "in"
    CONTAINS = "contains"
    STARTS_WITH = "starts_with"
    EXISTS = "exists"
    WITHIN_LAST = "within last"
    MORE_THAN_AGO = "more than ago"


COMPARISONS = (Op.EQ, Op.NEQ, Op.LT, Op.LTE, Op.GT, Op.GTE)
ORDERING = (Op.LT, Op.LTE, Op.GT, Op.GTE)
COUNT_OPS = COMPARISONS


@dataclass(frozen=True)
class Window:
    """Either the last ``within_days`` days, or [start, end)."""

    within_days: int | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class All:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Any_:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class FieldCond:
    """traits.<x>, computed.<x>, lifecycle_stage, tier, rfm_group, points_balance, tags, consent.<channel>."""

    field: str
    op: Op
    values: tuple[Scalar, ...] = ()
    days: int = 0


@dataclass(frozen=True)
class PropFilter:
    prop: str
    op: Op
    values: tuple[Scalar, ...] = ()


@dataclass(frozen=True)
class EventCond:
    name: str
    filters: tuple[PropFilter, ...] = ()
    window: Window | None = None
    count_op: Op = Op.GTE
    count: int = 1


@dataclass(frozen=True)
class ItemFilter:
    sku: str = ""
    category: str = ""
    product_tag: str = ""


@dataclass(frozen=True)
class OrderCond:
    aggregate: str  # "count", "sum" or "avg"
    op: Op
    value: Decimal
    window: Window | None = None
    item: ItemFilter | None = None
    store_tag: str = ""
    staff_tag: str = ""


@dataclass(frozen=True)
class Member:
    segment_id: str


Node = All | Any_ | Not | FieldCond | EventCond | OrderCond | Member

AGGREGATES = ("count", "sum", "avg")
SCALAR_FIELDS = ("lifecycle_stage", "tier", "rfm_group")
NUMERIC_FIELDS = ("points_balance",)
FIELD_PREFIXES = ("traits.", "computed.", "consent.")


def normalise(node: Node) -> Node:
    """Flatten nested groups of the same kind and unwrap one-item groups (the canonical form)."""
    if isinstance(node, (All, Any_)):
        kind = type(node)
        flat: list[Node] = []
        for item in node.items:
            item = normalise(item)
            flat.extend(item.items if isinstance(item, kind) else (item,))
        return flat[0] if len(flat) == 1 else kind(tuple(flat))
    if isinstance(node, Not):
        return Not(normalise(node.item))
    return node


def walk(node: Node) -> Iterator[Node]:
    """Every node of a rule, parents before children."""
    yield node
    if isinstance(node, (All, Any_)):
        for item in node.items:
            yield from walk(item)
    elif isinstance(node, Not):
        yield from walk(node.item)


def referenced_segments(node: Node) -> set[str]:
    if isinstance(node, Member):
        return {node.segment_id}
    if isinstance(node, (All, Any_)):
        return set().union(*(referenced_segments(i) for i in node.items))
    if isinstance(node, Not):
        return referenced_segments(node.item)
    return set()


def read_fields(node: Node) -> set[str]:
    """What a rule reads, for live re-evaluation: field names, "events:<name>", "orders",
    "object_tags:<store|staff|product>" (tags of the objects its order filters name), and
    "segment:<id>". The names are ProfileChanged's changed_fields vocabulary."""
    if isinstance(node, (All, Any_)):
        return set().union(*(read_fields(i) for i in node.items))
    if isinstance(node, Not):
        return read_fields(node.item)
    if isinstance(node, FieldCond):
        return {node.field}
    if isinstance(node, EventCond):
        return {f"events:{node.name}"}
    if isinstance(node, OrderCond):
        objects = {
            f"object_tags:{kind}"
            for kind, tag in (
                ("store", node.store_tag),
                ("staff", node.staff_tag),
                ("product", node.item.product_tag if node.item else ""),
            )
            if tag
        }
        return {"orders", *objects}
    return {f"segment:{node.segment_id}"}


def event_lookback(node: Node, now: datetime) -> dict[str, datetime | None]:
    """The events a rule can need, by name: the earliest time that matters (None: all). Both the
    answer and the next change instant (rules.timing) depend only on events at or after it."""
    found: dict[str, datetime | None] = {}
    for leaf in walk(node):
        if isinstance(leaf, EventCond):
            found[leaf.name] = earliest(found.get(leaf.name, now), _window_start(leaf.window, now))
    return found


def earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    """The earlier of two lookbacks (None: from the beginning)."""
    return None if a is None or b is None else min(a, b)


def _window_start(window: Window | None, now: datetime) -> datetime | None:
    if window is None:
        return None
    if window.within_days is not None:
        return now - timedelta(days=window.within_days)
    return window.start


def reads_calendar(node: Node) -> bool:
    """Whether the rule's answer depends on the workspace time zone: a relative date on a trait
    (its value may be a date without an offset, midnight in the workspace zone)."""
    return any(isinstance(n, FieldCond) and n.op in (Op.WITHIN_LAST, Op.MORE_THAN_AGO) for n in walk(node))


def is_windowed(node: Node) -> bool:
    """Whether the passing of time alone can change the rule's answer (it needs timers)."""
    if isinstance(node, (All, Any_)):
        return any(is_windowed(i) for i in node.items)
    if isinstance(node, Not):
        return is_windowed(node.item)
    if isinstance(node, FieldCond):
        return node.op in (Op.WITHIN_LAST, Op.MORE_THAN_AGO)
    if isinstance(node, (EventCond, OrderCond)):
        return node.window is not None
    return False
