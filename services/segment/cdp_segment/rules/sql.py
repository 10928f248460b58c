"""Compile a rule to one SQL query over the projection (estimate, list, full refresh).

Same semantics as ``memory`` (see its docstring). Three-valued SQL logic is collapsed at every
leaf with ``coalesce(..., false)``, so NOT behaves as in Python; strings compare with
``COLLATE "C"`` (code point order, as Python); numbers compare as ``numeric``.
"""

from __future__ import annotations

from datetime import datetime
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

_SQL_OP = {Op.EQ: "=", Op.NEQ: "<>", Op.LT: "<", Op.LTE: "<=", Op.GT: ">", Op.GTE: ">="}


class Compiler:
    """Collects parameters while compiling; ``$1`` is the workspace, ``$2`` is now."""

    def __init__(self, workspace_id: str, now: datetime) -> None:
        self.params: list[Any] = [workspace_id, now]

    def param(self, value: Any, cast: str) -> str:
        self.params.append(value)
        return f"${len(self.params)}::{cast}"

    def literal(self, value: Scalar) -> tuple[str, str]:
        """(placeholder, jsonb type) for an operand."""
        if isinstance(value, bool):
            return self.param(value, "boolean"), "boolean"
        if isinstance(value, Decimal):
            return self.param(value, "numeric"), "number"
        return self.param(value, "text"), "string"

    # jsonb comparisons -------------------------------------------------------------------

    def _text(self, v: str) -> str:
        return f"({v} #>> '{{}}')"

    # CASE, not AND: SQL does not promise to test the type before it evaluates the cast.
    def eq(self, v: str, operand: Scalar) -> str:
        placeholder, kind = self.literal(operand)
        cast = {"boolean": "::boolean", "number": "::numeric", "string": ""}[kind]
        return f"(CASE WHEN jsonb_typeof({v}) = '{kind}' THEN {self._text(v)}{cast} = {placeholder} ELSE false END)"

    def ordered(self, v: str, op: Op, operand: Scalar) -> str:
        placeholder, kind = self.literal(operand)
        if kind == "number":
            test = f"{self._text(v)}::numeric {_SQL_OP[op]} {placeholder}"
            return f"(CASE WHEN jsonb_typeof({v}) = 'number' THEN {test} ELSE false END)"
        test = f'({self._text(v)} COLLATE "C") {_SQL_OP[op]} ({placeholder} COLLATE "C")'
        return f"(CASE WHEN jsonb_typeof({v}) = 'string' THEN {test} ELSE false END)"

    def exists(self, v: str) -> str:
        return f"({v} IS NOT NULL AND jsonb_typeof({v}) <> 'null')"

    def compare(self, v: str, op: Op, operands: tuple[Scalar, ...], days: int = 0) -> str:
        if op is Op.EXISTS:
            return self.exists(v)
        if op is Op.EQ:
            return self.eq(v, operands[0])
        if op is Op.NEQ:
            return f"({self.exists(v)} AND NOT coalesce({self.eq(v, operands[0])}, false))"
        if op in (Op.LT, Op.LTE, Op.GT, Op.GTE):
            return self.ordered(v, op, operands[0])
        if op is Op.BETWEEN:
            return f"({self.ordered(v, Op.GTE, operands[0])} AND {self.ordered(v, Op.LTE, operands[1])})"
        if op is Op.IN:
            return "(" + " OR ".join(self.eq(v, operand) for operand in operands) + ")"
        if op is Op.CONTAINS:
            needle = self.param(operands[0], "text")
            return (
                f"((jsonb_typeof({v}) = 'string' AND strpos({self._text(v)}, {needle}) > 0) OR "
                f"(jsonb_typeof({v}) = 'array' AND EXISTS (SELECT 1 FROM jsonb_array_elements({v}) AS el(x) "
                f"WHERE jsonb_typeof(el.x) = 'string' AND (el.x #>> '{{}}') = {needle})))"
            )
        if op is Op.STARTS_WITH:
            return f"(jsonb_typeof({v}) = 'string' AND starts_with({self._text(v)}, {self.param(operands[0], 'text')}))"
        moment = f"try_timestamptz(CASE WHEN jsonb_typeof({v}) = 'string' THEN {self._text(v)} END)"
        interval = f"make_interval(days => {self.param(days, 'int')})"
        if op is Op.WITHIN_LAST:
            return f"({moment} > $2::timestamptz - {interval} AND {moment} <= $2::timestamptz)"
        return f"({moment} <= $2::timestamptz - {interval})"

    # nodes -------------------------------------------------------------------------------

    def window(self, column: str, window: Window | None) -> str:
        if window is None:
            return "true"
        if window.within_days is not None:
            days = self.param(window.within_days, "int")
            return f"({column} > $2::timestamptz - make_interval(days => {days}) AND {column} <= $2::timestamptz)"
        start, end = self.param(window.start, "timestamptz"), self.param(window.end, "timestamptz")
        return f"({column} >= {start} AND {column} < {end})"

    def field(self, node: FieldCond) -> str:
        if node.field == "tags":
            if node.op is Op.EXISTS:
                return "(cardinality(p.tags) > 0)"
            return f"({self.param(node.values[0], 'text')} = ANY(p.tags))"
        for prefix, column in (("traits.", "p.traits"), ("computed.", "p.computed"), ("consent.", "p.consent")):
            if node.field.startswith(prefix):
                value = f"({column} -> {self.param(node.field[len(prefix) :], 'text')})"
                break
        else:
            value = f"to_jsonb(p.{node.field})"  # lifecycle_stage, tier, rfm_group (validated names)
        return self.compare(value, node.op, node.values, node.days)

    def event(self, node: EventCond) -> str:
        parts = []
        for f in node.filters:
            value = f"(e.properties -> {self.param(f.prop, 'text')})"
            parts.append(f"coalesce({self.compare(value, f.op, f.values)}, false)")
        filters = " AND ".join(parts)
        count = (
            "(SELECT count(*) FROM person_events e WHERE e.workspace_id = p.workspace_id AND e.person_id = p.person_id"
            f" AND e.name = {self.param(node.name, 'text')} AND {self.window('e.event_time', node.window)}"
            f"{' AND ' + filters if filters else ''})"
        )
        return f"({count} {_SQL_OP[node.count_op]} {self.param(node.count, 'bigint')})"

    def order(self, node: OrderCond) -> str:
        conditions = [
            "o.workspace_id = p.workspace_id",
            "o.person_id = p.person_id",
            "o.status = 'completed'",
            self.window("o.order_time", node.window),
        ]
        for tag, kind, column in ((node.store_tag, "store", "o.store_id"), (node.staff_tag, "staff", "o.staff_id")):
            if tag:
                conditions.append(
                    "EXISTS (SELECT 1 FROM object_tags t WHERE t.workspace_id = o.workspace_id"
                    f" AND t.object_kind = '{kind}' AND t.object_id = {column} AND t.tag = {self.param(tag, 'text')})"
                )
        if node.item is not None:
            item = ["i.workspace_id = o.workspace_id", "i.order_id = o.order_id"]
            if node.item.sku:
                item.append(f"i.sku = {self.param(node.item.sku, 'text')}")
            if node.item.category:
                category = self.param(node.item.category, "text")
                item.append(f"(i.category = {category} OR starts_with(i.category, {category} || '/'))")
            if node.item.product_tag:
                item.append(
                    "EXISTS (SELECT 1 FROM object_tags t WHERE t.workspace_id = i.workspace_id"
                    " AND t.object_kind = 'product' AND t.object_id = i.product_id"
                    f" AND t.tag = {self.param(node.item.product_tag, 'text')})"
                )
            conditions.append(f"EXISTS (SELECT 1 FROM order_items i WHERE {' AND '.join(item)})")
        where = " AND ".join(conditions)
        value = self.param(node.value, "numeric")
        op = _SQL_OP[node.op]
        if node.aggregate == "count":
            aggregate = f"count(*) {op} {value}"
        elif node.aggregate == "sum":
            aggregate = f"coalesce(sum(o.total_minor), 0) {op} {value}"
        else:
            aggregate = f"CASE WHEN count(*) > 0 THEN sum(o.total_minor) {op} {value} * count(*) END"
        return f"(SELECT {aggregate} FROM person_orders o WHERE {where})"

    def node(self, node: Node) -> str:
        if isinstance(node, All):
            return "(" + " AND ".join(self.node(i) for i in node.items) + ")"
        if isinstance(node, Any_):
            return "(" + " OR ".join(self.node(i) for i in node.items) + ")"
        if isinstance(node, Not):
            return f"(NOT {self.node(node.item)})"
        if isinstance(node, FieldCond):
            leaf = self.field(node)
        elif isinstance(node, EventCond):
            leaf = self.event(node)
        elif isinstance(node, OrderCond):
            leaf = self.order(node)
        elif isinstance(node, Member):
            leaf = (
                "EXISTS (SELECT 1 FROM memberships m WHERE m.workspace_id = p.workspace_id"
                f" AND m.segment_id = {self.param(node.segment_id, 'text')} AND m.person_id = p.person_id)"
            )
        else:  # pragma: no cover
            raise TypeError(f"unknown node {node!r}")
        return f"coalesce({leaf}, false)"


def compile_where(node: Node, workspace_id: str, now: datetime) -> tuple[str, list[Any]]:
    """A boolean SQL expression over ``persons p`` and its parameters ($1 workspace, $2 now)."""
    compiler = Compiler(workspace_id, now)
    # $2 is always typed, even when no condition reads the time.
    return f"$2::timestamptz IS NOT NULL AND {compiler.node(node)}", compiler.params


def members_query(node: Node, workspace_id: str, now: datetime) -> tuple[str, list[Any]]:
    where, params = compile_where(node, workspace_id, now)
    return f"SELECT p.person_id::text AS person_id FROM persons p WHERE p.workspace_id = $1 AND {where}", params


def count_query(node: Node, workspace_id: str, now: datetime) -> tuple[str, list[Any]]:
    where, params = compile_where(node, workspace_id, now)
    return f"SELECT count(*) FROM persons p WHERE p.workspace_id = $1 AND {where}", params
