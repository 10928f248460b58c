"""Evaluate a rule for one person held in memory: the live path.

The semantics (shared with ``sql``; docs/segment.md states them for users):

- a missing field, a JSON null, or a value of another type than the operand makes a
  comparison false; ``!=`` means "present and different";
- a PII trait (its name in ``pii_traits``, its value never sent here) answers only ``exists``;
- numbers compare as exact decimals, strings by code point, booleans only with = and !=;
- ``contains`` is a substring test on strings and a membership test on lists;
- relative dates read ISO 8601 strings (``YYYY-MM-DD[Thh:mm[:ss[.fraction]]][Z|±hh:mm]``, no
  zone = UTC, up to 9 fraction digits truncated to microseconds); anything else makes the
  condition false;
- event and order windows: ``within Nd`` is now - N days < t ≤ now; ``between A and B`` is
  A ≤ t < B; orders count only when completed; an average of no orders is false, a sum is 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any

from cdp_segment.rules.ast import (
    All,
    Any_,
    EventCond,
    FieldCond,
    Member,
    Node,
    Not,
    Op,
    OrderCond,
    Scalar,
    Window,
)
from cdp_segment.rules.data import OrderFact, PersonFacts, WorkspaceFacts

MISSING = object()
# Instants from here on are not times: asyncpg stores datetime.max (and datetime.min) as
# PostgreSQL's +/-infinity, and later instants do not exist in Python. try_timestamptz and the
# SQL timer edges stop at the same place.
END_OF_TIME = datetime.max.replace(tzinfo=UTC)
# Same shape as the try_timestamptz() SQL function (migrations 0005, 0007).
ISO_TIME = re.compile(
    r"([1-9]\d{3})-(\d{2})-(\d{2})(?:T([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d)(?:\.(\d{1,9}))?)?)?"
    r"(Z|[+-](?:0\d|1[0-4]):[0-5]\d)?",
    re.ASCII,
)


def zone_of(text: str | None, default: tzinfo) -> tzinfo:
    """The zone of "Z" or "±hh:mm" (``default`` when None); ValueError for an impossible offset."""
    if text is None:
        return default
    if text == "Z":
        return UTC
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError(text)
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if text[0] == "-" else offset)


def wall_time(parts: Sequence[str | None], zone: tzinfo) -> datetime:
    """Year, month, day, hour, minute, second, fraction (regex groups; None is 0; fractions
    truncated to microseconds) at ``zone``, in UTC. ValueError or OverflowError when that is not
    a date and time in the years 1-9999."""
    year, month, day, hour, minute, second, fraction = parts
    moment = datetime(
        int(year),
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        int((fraction or "")[:6].ljust(6, "0")),
        tzinfo=zone,
    )
    return moment.astimezone(UTC)


def as_time(value: Any, zone: tzinfo = UTC) -> datetime | None:
    """An ISO 8601 timestamp string as an aware UTC datetime, else None: a date without an
    offset is midnight in ``zone`` (the workspace time zone), a date and time without one is
    UTC, a date with an offset is midnight at that offset, fractions beyond microseconds are
    truncated, and an instant from END_OF_TIME on is not a time (as try_timestamptz)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    match = ISO_TIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    try:
        moment = wall_time(match.groups()[:7], zone_of(match.group(8), zone if match.group(4) is None else UTC))
    except (ValueError, OverflowError):  # not a calendar date, or beyond the year 9999 in UTC
        return None
    return moment if moment < END_OF_TIME else None


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, Decimal)):
        return "number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return None


def as_number(value: Any) -> Decimal | None:
    """A JSON number as an exact decimal (a float by its shortest repr), else None."""
    if _kind(value) != "number":
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value)) if isinstance(value, float) else Decimal(value)


def _eq(value: Any, operand: Scalar) -> bool:
    kind = _kind(value)
    if kind != _kind(operand):
        return False
    if kind == "number":
        return as_number(value) == as_number(operand)
    return value == operand


def _ordered(value: Any, op: Op, operand: Scalar) -> bool:
    kind = _kind(value)
    if kind not in ("number", "string") or kind != _kind(operand):
        return False
    left, right = (as_number(value), as_number(operand)) if kind == "number" else (value, operand)
    return {Op.LT: left < right, Op.LTE: left <= right, Op.GT: left > right, Op.GTE: left >= right}[op]


def compare(
    value: Any, op: Op, operands: tuple[Scalar, ...], days: int = 0, now: datetime | None = None, zone: tzinfo = UTC
) -> bool:
    present = value is not MISSING and value is not None
    if op is Op.EXISTS:
        return present
    if not present:
        return False
    if op is Op.EQ:
        return _eq(value, operands[0])
    if op is Op.NEQ:
        return not _eq(value, operands[0])
    if op in (Op.LT, Op.LTE, Op.GT, Op.GTE):
        return _ordered(value, op, operands[0])
    if op is Op.BETWEEN:
        return _ordered(value, Op.GTE, operands[0]) and _ordered(value, Op.LTE, operands[1])
    if op is Op.IN:
        return any(_eq(value, operand) for operand in operands)
    if op is Op.CONTAINS:
        if isinstance(value, str):
            return isinstance(operands[0], str) and operands[0] in value
        if isinstance(value, list):
            return any(_eq(item, operands[0]) for item in value)
        return False
    if op is Op.STARTS_WITH:
        return isinstance(value, str) and isinstance(operands[0], str) and value.startswith(operands[0])
    moment = as_time(value, zone)
    if moment is None or now is None:
        return False
    if op is Op.WITHIN_LAST:
        return now - timedelta(days=days) < moment <= now
    return moment <= now - timedelta(days=days)  # MORE_THAN_AGO


def field_value(person: PersonFacts, field: str) -> Any:
    if field.startswith("traits."):
        return person.traits.get(field[7:], MISSING)
    if field.startswith("computed."):
        return person.computed.get(field[9:], MISSING)
    if field.startswith("consent."):
        return person.consent.get(field[8:], MISSING)
    if field == "tags":
        return sorted(person.tags) if person.tags else MISSING
    return getattr(person, field)


def in_window(moment: datetime, window: Window | None, now: datetime) -> bool:
    if window is None:
        return True
    if window.within_days is not None:
        return now - timedelta(days=window.within_days) < moment <= now
    return window.start <= moment < window.end


def _order_matches(
    order: OrderFact, node: OrderCond, person: PersonFacts, workspace: WorkspaceFacts, now: datetime
) -> bool:
    if order.status != "completed" or not in_window(order.time, node.window, now):
        return False
    if node.aggregate != "count" and not person.money(order):
        return False
    if node.store_tag and node.store_tag not in workspace.tags_of("store", order.store_id):
        return False
    if node.staff_tag and node.staff_tag not in workspace.tags_of("staff", order.staff_id):
        return False
    if node.item is not None:
        wanted = node.item

        def item_ok(item) -> bool:
            if wanted.sku and item.sku != wanted.sku:
                return False
            if wanted.category and not (
                item.category == wanted.category or item.category.startswith(wanted.category + "/")
            ):
                return False
            return not wanted.product_tag or wanted.product_tag in workspace.tags_of("product", item.product_id)

        if not any(item_ok(i) for i in order.items):
            return False
    return True


def event_matches(event, node: EventCond, now: datetime) -> bool:
    return (
        event.name == node.name
        and in_window(event.time, node.window, now)
        and all(compare(event.properties.get(f.prop, MISSING), f.op, f.values) for f in node.filters)
    )


def _count_ok(count: Decimal, op: Op, operand: Decimal) -> bool:
    return (
        _eq(count, operand)
        if op is Op.EQ
        else (not _eq(count, operand))
        if op is Op.NEQ
        else _ordered(count, op, operand)
    )


def evaluate(node: Node, person: PersonFacts, workspace: WorkspaceFacts, now: datetime) -> bool:
    if isinstance(node, All):
        return all(evaluate(i, person, workspace, now) for i in node.items)
    if isinstance(node, Any_):
        return any(evaluate(i, person, workspace, now) for i in node.items)
    if isinstance(node, Not):
        return not evaluate(node.item, person, workspace, now)
    if isinstance(node, FieldCond):
        if node.op is Op.EXISTS and node.field.startswith("traits.") and node.field[7:] in person.pii_traits:
            return True
        return compare(field_value(person, node.field), node.op, node.values, node.days, now, workspace.zone)
    if isinstance(node, EventCond):
        count = sum(1 for e in person.events if event_matches(e, node, now))
        return _count_ok(Decimal(count), node.count_op, Decimal(node.count))
    if isinstance(node, OrderCond):
        totals = [Decimal(o.total_minor) for o in person.orders if _order_matches(o, node, person, workspace, now)]
        if node.aggregate == "count":
            value = Decimal(len(totals))
        elif node.aggregate == "sum":
            value = sum(totals, Decimal(0))
        else:
            if not totals:
                return False
            # avg op v  <=>  sum op v * n: exact, with no rounding of the average
            return _count_ok(sum(totals, Decimal(0)), node.op, node.value * len(totals))
        return _count_ok(value, node.op, node.value)
    if isinstance(node, Member):
        return node.segment_id in person.memberships
    raise TypeError(f"unknown node {node!r}")
