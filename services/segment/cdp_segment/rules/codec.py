"""The rule AST to and from ``cdp.segment.v1.Condition``."""

from __future__ import annotations

import re
from datetime import UTC
from decimal import Decimal

from google.protobuf import struct_pb2

from cdp.segment.v1 import condition_pb2 as pb
from cdp_segment.rules.ast import (
    All,
    Any_,
    EventCond,
    FieldCond,
    ItemFilter,
    Member,
    Node,
    Not,
    Op,
    OrderCond,
    PropFilter,
    Scalar,
    Window,
    normalise,
)
from cdp_segment.rules.validate import MAX_DEPTH, RuleError, validate

_OPS = {op: pb.Operator.Value(f"OPERATOR_{op.name}") for op in Op}
_OPS_BACK = {value: op for op, value in _OPS.items()}
_AGGREGATES = {
    "count": pb.OrderCondition.AGGREGATE_COUNT,
    "sum": pb.OrderCondition.AGGREGATE_SUM,
    "avg": pb.OrderCondition.AGGREGATE_AVG,
}
_AGGREGATES_BACK = {value: name for name, value in _AGGREGATES.items()}


def _value(scalar: Scalar) -> struct_pb2.Value:
    """A scalar as Value: from_proto(to_proto(rule)) == rule for every rule (docs/segment.md)."""
    if isinstance(scalar, bool):
        return struct_pb2.Value(bool_value=scalar)
    if isinstance(scalar, Decimal):
        number = float(scalar)
        if Decimal(repr(number)) == scalar:
            return struct_pb2.Value(number_value=number)
        # More digits than a double holds: "#" and the exact decimal.
        return struct_pb2.Value(string_value=f"#{scalar}")
    # A string that starts with "#" is escaped with one more "#".
    return struct_pb2.Value(string_value=f"#{scalar}" if scalar.startswith("#") else scalar)


def _scalar(value: struct_pb2.Value, where: str) -> Scalar:
    kind = value.WhichOneof("kind")
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value":
        if value.number_value != value.number_value or value.number_value in (float("inf"), float("-inf")):
            raise RuleError(f"{where}: numbers must be finite")
        return Decimal(repr(value.number_value))
    if kind == "string_value":
        return _string_scalar(value.string_value, where)
    raise RuleError(f"{where}: a value must be a string, number or boolean")


_DECIMAL = re.compile(r"-?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?", re.ASCII)


def _string_scalar(text: str, where: str) -> Scalar:
    """ "##x" is the string "#x"; "#" and a decimal number is that exact number; any other text
    (including "#vip") is itself."""
    if text.startswith("##"):
        return text[1:]
    if text.startswith("#") and _DECIMAL.fullmatch(text[1:]):
        return Decimal(text[1:])
    return text


def _window_pb(window: Window | None) -> pb.Window | None:
    if window is None:
        return None
    if window.within_days is not None:
        return pb.Window(within_days=window.within_days)
    message = pb.Window()
    message.between.start.FromDatetime(window.start)
    message.between.end.FromDatetime(window.end)
    return message


def _window(message: pb.Window, present: bool) -> Window | None:
    if not present:
        return None
    kind = message.WhichOneof("kind")
    if kind == "within_days":
        return Window(within_days=message.within_days)
    if kind == "between":
        try:
            return Window(start=message.between.start.ToDatetime(UTC), end=message.between.end.ToDatetime(UTC))
        except (ValueError, OverflowError):
            raise RuleError("a window's dates must be between years 1 and 9999") from None
    raise RuleError("a window needs within_days or between")


def to_proto(node: Node) -> pb.Condition:
    if isinstance(node, All):
        return pb.Condition(all_of=pb.ConditionList(conditions=[to_proto(i) for i in node.items]))
    if isinstance(node, Any_):
        return pb.Condition(any_of=pb.ConditionList(conditions=[to_proto(i) for i in node.items]))
    if isinstance(node, Not):
        return pb.Condition(negation=to_proto(node.item))
    if isinstance(node, FieldCond):
        return pb.Condition(
            field=pb.FieldCondition(
                field=node.field, op=_OPS[node.op], values=[_value(v) for v in node.values], days=node.days
            )
        )
    if isinstance(node, EventCond):
        message = pb.EventCondition(
            name=node.name,
            filters=[
                pb.PropertyFilter(property=f.prop, op=_OPS[f.op], values=[_value(v) for v in f.values])
                for f in node.filters
            ],
            count_op=_OPS[node.count_op],
            count=node.count,
        )
        if node.window:
            message.window.CopyFrom(_window_pb(node.window))
        return pb.Condition(event=message)
    if isinstance(node, OrderCond):
        message = pb.OrderCondition(
            aggregate=_AGGREGATES[node.aggregate],
            op=_OPS[node.op],
            value=_value(node.value),
            store_tag=node.store_tag,
            staff_tag=node.staff_tag,
        )
        if node.window:
            message.window.CopyFrom(_window_pb(node.window))
        if node.item:
            message.item.CopyFrom(
                pb.ItemFilter(sku=node.item.sku, category=node.item.category, product_tag=node.item.product_tag)
            )
        return pb.Condition(order=message)
    return pb.Condition(segment=pb.MembershipCondition(segment_id=node.segment_id))


def _op(value: int, where: str) -> Op:
    if value not in _OPS_BACK:
        raise RuleError(f"{where}: op is required")
    return _OPS_BACK[value]


def _from_proto(message: pb.Condition, where: str, depth: int = 0) -> Node:
    if depth > MAX_DEPTH:
        raise RuleError(f"rule nests deeper than {MAX_DEPTH} levels")
    kind = message.WhichOneof("kind")
    if kind in ("all_of", "any_of"):
        items = tuple(
            _from_proto(c, f"{where}.{kind}[{n}]", depth + 1) for n, c in enumerate(getattr(message, kind).conditions)
        )
        return All(items) if kind == "all_of" else Any_(items)
    if kind == "negation":
        return Not(_from_proto(message.negation, f"{where}.negation", depth + 1))
    if kind == "field":
        f = message.field
        values = tuple(_scalar(v, f"{where}.field") for v in f.values)
        return FieldCond(f.field, _op(f.op, f"{where}.field"), values, f.days)
    if kind == "event":
        e = message.event
        filters = tuple(
            PropFilter(p.property, _op(p.op, f"{where}.event.filters"), tuple(_scalar(v, where) for v in p.values))
            for p in e.filters
        )
        count_op = _op(e.count_op, f"{where}.event.count_op")
        return EventCond(e.name, filters, _window(e.window, e.HasField("window")), count_op, e.count)
    if kind == "order":
        o = message.order
        if o.aggregate not in _AGGREGATES_BACK:
            raise RuleError(f"{where}.order.aggregate: is required")
        value = _scalar(o.value, f"{where}.order.value")
        if not isinstance(value, Decimal):
            raise RuleError(f"{where}.order.value: must be a number")
        item = ItemFilter(o.item.sku, o.item.category, o.item.product_tag) if o.HasField("item") else None
        return OrderCond(
            _AGGREGATES_BACK[o.aggregate],
            _op(o.op, f"{where}.order.op"),
            value,
            _window(o.window, o.HasField("window")),
            item,
            o.store_tag,
            o.staff_tag,
        )
    if kind == "segment":
        return Member(message.segment.segment_id)
    raise RuleError(f"{where}: empty condition")


def from_proto(message: pb.Condition) -> Node:
    """The validated, normalised rule; RuleError naming the path of a bad part."""
    node = normalise(_from_proto(message, "condition"))
    validate(node)
    return node
