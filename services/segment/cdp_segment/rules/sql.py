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

# rules.memory.END_OF_TIME: edges from there on are never reached (as in rules.timing).
END_OF_TIME = "9999-12-31 23:59:59.999999+00"
# Columns of persons that rules read as strings (the others are jsonb, or points_balance).
_TEXT_COLUMNS = ("lifecycle_stage", "tier", "rfm_group")
_SQL_OP = {Op.EQ: "=", Op.NEQ: "<>", Op.LT: "<", Op.LTE: "<=", Op.GT: ">", Op.GTE: ">="}


def _existence(op: Op, count: Decimal) -> bool | None:
    """True when "count op n" means "at least one", False when it means "none", else None."""
    if (op, count) in ((Op.GTE, 1), (Op.GT, 0)) or (op is Op.NEQ and count == 0):
        return True
    if (op, count) in ((Op.EQ, 0), (Op.LT, 1), (Op.LTE, 0)):
        return False
    return None


class Compiler:
    """Collects parameters while compiling; ``$1`` is the workspace, ``$2`` is now. ``zone`` (an
    IANA name) is the workspace time zone: where a date-only value without an offset starts."""

    def __init__(self, workspace_id: str, now: datetime, zone: str = "UTC") -> None:
        self.params: list[Any] = [workspace_id, now]
        self.zone = zone
        self._zone_placeholder = ""

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

    def one_of(self, v: str, operands: tuple[Scalar, ...]) -> str:
        """``in``: one array parameter per operand type (a long list stays a few parameters)."""
        tests = []
        for kind, cast, wanted in (
            ("string", "", lambda x: isinstance(x, str)),
            ("number", "::numeric", lambda x: isinstance(x, Decimal)),
            ("boolean", "::boolean", lambda x: isinstance(x, bool)),
        ):
            values = [x for x in operands if wanted(x)]
            if values:
                array = self.param(values, {"string": "text", "number": "numeric", "boolean": "boolean"}[kind] + "[]")
                tests.append(f"WHEN jsonb_typeof({v}) = '{kind}' THEN {self._text(v)}{cast} = ANY({array})")
        return f"(CASE {' '.join(tests)} ELSE false END)"

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
            return self.one_of(v, operands)
        if op is Op.CONTAINS:
            needle = self.param(operands[0], "text")
            return (
                f"((jsonb_typeof({v}) = 'string' AND strpos({self._text(v)}, {needle}) > 0) OR "
                f"(jsonb_typeof({v}) = 'array' AND EXISTS (SELECT 1 FROM jsonb_array_elements({v}) AS el(x) "
                f"WHERE jsonb_typeof(el.x) = 'string' AND (el.x #>> '{{}}') = {needle})))"
            )
        if op is Op.STARTS_WITH:
            return f"(jsonb_typeof({v}) = 'string' AND starts_with({self._text(v)}, {self.param(operands[0], 'text')}))"
        moment = self.moment(v)
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
                key = self.param(node.field[len(prefix) :], "text")
                value = f"({column} -> {key})"
                if prefix == "traits." and node.op is Op.EXISTS:
                    return f"({self.exists(value)} OR {key} = ANY(p.pii_traits))"
                break
        else:
            if node.field in _TEXT_COLUMNS and node.op in (Op.EQ, Op.IN):
                # the column itself (no jsonb per row): a text column is a string or NULL, so
                # only string operands can match, as in eq / one_of
                strings = [v for v in node.values if isinstance(v, str)]
                if not strings:
                    return "false"
                if node.op is Op.EQ:
                    return f"(p.{node.field} = {self.param(strings[0], 'text')})"
                return f"(p.{node.field} = ANY({self.param(strings, 'text[]')}))"
            value = f"to_jsonb(p.{node.field})"  # lifecycle_stage, tier, rfm_group, points_balance (validated)
        return self.compare(value, node.op, node.values, node.days)

    def event_where(self, node: EventCond, *, window: bool = True) -> str:
        """The events of ``p`` that ``node`` counts (alias ``e``)."""
        parts = [
            "e.workspace_id = p.workspace_id",
            "e.person_id = p.person_id",
            f"e.name = {self.param(node.name, 'text')}",
        ]
        if window:
            parts.append(self.window("e.event_time", node.window))
        for f in node.filters:
            value = f"(e.properties -> {self.param(f.prop, 'text')})"
            parts.append(f"coalesce({self.compare(value, f.op, f.values)}, false)")
        return " AND ".join(parts)

    def event(self, node: EventCond) -> str:
        where = self.event_where(node)
        exists = _existence(node.count_op, Decimal(node.count))
        if exists is not None:  # "did" / "did not": stop at the first matching event
            return f"({'' if exists else 'NOT '}EXISTS (SELECT 1 FROM person_events e WHERE {where}))"
        count = f"(SELECT count(*) FROM person_events e WHERE {where})"
        return f"({count} {_SQL_OP[node.count_op]} {self.param(node.count, 'bigint')})"

    def order_where(self, node: OrderCond, *, window: bool = True) -> str:
        """The orders of ``p`` that ``node`` aggregates (alias ``o``)."""
        conditions = ["o.workspace_id = p.workspace_id", "o.person_id = p.person_id", "o.status = 'completed'"]
        if node.aggregate != "count":  # PersonFacts.money
            conditions.append("o.currency IN ('', p.currency)")
        if window:
            conditions.append(self.window("o.order_time", node.window))
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
        return " AND ".join(conditions)

    def order(self, node: OrderCond) -> str:
        where = self.order_where(node)
        exists = _existence(node.op, node.value) if node.aggregate == "count" else None
        if exists is not None:
            return f"({'' if exists else 'NOT '}EXISTS (SELECT 1 FROM person_orders o WHERE {where}))"
        value = self.param(node.value, "numeric")
        op = _SQL_OP[node.op]
        if node.aggregate == "count":
            aggregate = f"count(*) {op} {value}"
        elif node.aggregate == "sum":
            aggregate = f"coalesce(sum(o.total_minor), 0) {op} {value}"
        else:
            aggregate = f"CASE WHEN count(*) > 0 THEN sum(o.total_minor) {op} {value} * count(*) END"
        return f"(SELECT {aggregate} FROM person_orders o WHERE {where})"

    def moment(self, v: str) -> str:
        if not self._zone_placeholder:
            self._zone_placeholder = self.param(self.zone, "text")
        text = f"CASE WHEN jsonb_typeof({v}) = 'string' THEN {self._text(v)} END"
        return f"try_timestamptz({text}, {self._zone_placeholder})"

    # time edges (the SQL twin of timing.next_change) -------------------------------------

    def edges(self, node: Node, restrict: str = "") -> list[str]:
        """SELECTs of (person_id, edge): the window edges of the persons' facts (timing._edges),
        driven by the fact tables (joins, not a subquery per person). ``restrict``: an extra
        condition on ``p``."""
        if isinstance(node, (All, Any_)):
            return [edge for item in node.items for edge in self.edges(item, restrict)]
        if isinstance(node, Not):
            return self.edges(node.item, restrict)
        persons = f"p.workspace_id = $1{restrict}"
        if isinstance(node, FieldCond):
            if node.op not in (Op.WITHIN_LAST, Op.MORE_THAN_AGO) or not node.field.startswith(("traits.", "computed.")):
                return []
            column = "p.traits" if node.field.startswith("traits.") else "p.computed"
            key = self.param(node.field.split(".", 1)[1], "text")
            days = self.param(node.days, "int")
            return [
                f"SELECT p.person_id, unnest(ARRAY[t.m, t.m + make_interval(days => {days})]) FROM persons p"
                f" CROSS JOIN LATERAL (SELECT {self.moment(f'({column} -> {key})')} AS m) AS t"
                f" WHERE {persons} AND t.m IS NOT NULL"
            ]
        if isinstance(node, EventCond) and node.window and node.window.within_days is not None:
            days = self.param(node.window.within_days, "int")
            return [
                f"SELECT p.person_id, unnest(ARRAY[e.event_time, e.event_time + make_interval(days => {days})])"
                f" FROM persons p JOIN person_events e ON {self.event_where(node, window=False)} WHERE {persons}"
            ]
        if isinstance(node, OrderCond) and node.window and node.window.within_days is not None:
            days = self.param(node.window.within_days, "int")
            return [
                f"SELECT p.person_id, unnest(ARRAY[o.order_time, o.order_time + make_interval(days => {days})])"
                f" FROM persons p JOIN person_orders o ON {self.order_where(node, window=False)} WHERE {persons}"
            ]
        return []

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
        # A leaf that is never NULL stays bare: the planner turns a bare (NOT) EXISTS under AND
        # into a (parallel) semi or anti join instead of a subquery per person.
        return leaf if _never_null(node) else f"coalesce({leaf}, false)"


def _never_null(node: Node) -> bool:
    """EXISTS, count(*) and coalesce(sum, 0) compared with a number are true or false, never NULL."""
    return isinstance(node, (EventCond, Member)) or (isinstance(node, OrderCond) and node.aggregate != "avg")


def compile_where(node: Node, workspace_id: str, now: datetime, zone: str = "UTC") -> tuple[str, list[Any]]:
    """A boolean SQL expression over ``persons p`` and its parameters ($1 workspace, $2 now)."""
    compiler = Compiler(workspace_id, now, zone)
    # $2 is always typed, even when no condition reads the time.
    return f"$2::timestamptz IS NOT NULL AND {compiler.node(node)}", compiler.params


def _persons(compiler: Compiler, persons: list[str] | None) -> str:
    """Restricts ``p`` to some persons (a targeted refresh) when ``persons`` is given."""
    return "" if persons is None else f" AND p.person_id = ANY({compiler.param(persons, 'uuid[]')})"


def members_query(
    node: Node, workspace_id: str, now: datetime, persons: list[str] | None = None, zone: str = "UTC"
) -> tuple[str, list[Any]]:
    """Person ids (column ``person_id``, uuid) admitted by ``node``."""
    compiler = Compiler(workspace_id, now, zone)
    where = compiler.node(node)
    restrict = _persons(compiler, persons)
    return (
        f"SELECT p.person_id FROM persons p WHERE p.workspace_id = $1 AND $2::timestamptz IS NOT NULL"
        f"{restrict} AND {where}",
        compiler.params,
    )


def count_query(node: Node, workspace_id: str, now: datetime, zone: str = "UTC") -> tuple[str, list[Any]]:
    where, params = compile_where(node, workspace_id, now, zone)
    return f"SELECT count(*) FROM persons p WHERE p.workspace_id = $1 AND {where}", params


def edges_query(
    node: Node, workspace_id: str, now: datetime, persons: list[str] | None = None, zone: str = "UTC"
) -> tuple[str, list[Any]] | None:
    """(person_id, due_at) for every person with a window edge after now: the SQL twin of
    ``timing.next_change``, for the timers of a refresh. None when the rule has no edges."""
    compiler = Compiler(workspace_id, now, zone)
    restrict = _persons(compiler, persons)
    edges = compiler.edges(node, restrict)
    if not edges:
        return None
    union = " UNION ALL ".join(f"({edge})" for edge in edges)
    return (
        f"SELECT x.person_id, min(x.edge) AS due_at FROM ({union}) AS x(person_id, edge)"
        f" WHERE x.edge > $2::timestamptz AND x.edge < '{END_OF_TIME}' GROUP BY x.person_id",
        compiler.params,
    )


def diff_query(
    node: Node,
    workspace_id: str,
    now: datetime,
    segment_id: str,
    persons: list[str] | None = None,
    zone: str = "UTC",
) -> tuple[str, list[Any]]:
    """Bring ``memberships`` of a segment in line with the rule in one statement (a refresh, full
    or of some persons); returns the rows (person_id, entered) that changed."""
    compiler = Compiler(workspace_id, now, zone)
    where = compiler.node(node)
    restrict, scope = "", ""
    if persons is not None:
        placeholder = compiler.param(persons, "uuid[]")
        restrict, scope = f" AND p.person_id = ANY({placeholder})", f" AND m.person_id = ANY({placeholder})"
    segment = compiler.param(segment_id, "text")
    return (
        f"""WITH fresh AS (
                SELECT p.person_id FROM persons p
                WHERE p.workspace_id = $1 AND $2::timestamptz IS NOT NULL{restrict} AND {where}),
            entered AS (
                INSERT INTO memberships (workspace_id, segment_id, person_id, since)
                SELECT $1, {segment}, person_id, $2 FROM fresh ON CONFLICT DO NOTHING RETURNING person_id),
            exited AS (
                DELETE FROM memberships m WHERE m.workspace_id = $1 AND m.segment_id = {segment}{scope}
                  AND NOT EXISTS (SELECT 1 FROM fresh f WHERE f.person_id = m.person_id) RETURNING person_id)
            SELECT person_id::text AS person_id, true AS entered FROM entered
            UNION ALL SELECT person_id::text, false FROM exited""",
        compiler.params,
    )
