"""Semantic checks of a parsed rule: fields, operators, operands, windows, limits."""

from __future__ import annotations

import re
from decimal import Decimal

from cdp_segment.rules.ast import (
    AGGREGATES,
    COMPARISONS,
    NUMERIC_FIELDS,
    ORDERING,
    SCALAR_FIELDS,
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

MAX_DEPTH = 32
MAX_NODES = 500
MAX_IN_VALUES = 1000
MAX_DAYS = 36_500
_SEGMENT_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


class RuleError(ValueError):
    """The rule parses but cannot be evaluated as written."""


def _is_number(value: Scalar) -> bool:
    return isinstance(value, Decimal)


def _check_operands(where: str, op: Op, values: tuple[Scalar, ...], days: int, *, allow_days: bool) -> None:
    if op in (Op.WITHIN_LAST, Op.MORE_THAN_AGO):
        if not allow_days:
            raise RuleError(f"{where}: relative dates apply to traits.* and computed.* fields")
        if values or not 1 <= days <= MAX_DAYS:
            raise RuleError(f"{where}: needs a number of days between 1 and {MAX_DAYS}")
        return
    if days:
        raise RuleError(f"{where}: days only go with 'within last' and 'more than ... ago'")
    expected = {Op.BETWEEN: 2, Op.EXISTS: 0}.get(op, 1)
    if op is Op.IN:
        if not 1 <= len(values) <= MAX_IN_VALUES:
            raise RuleError(f"{where}: 'in' takes 1 to {MAX_IN_VALUES} values")
        return
    if len(values) != expected:
        raise RuleError(f"{where}: {op.value} takes {expected} value(s)")
    if op in (Op.CONTAINS, Op.STARTS_WITH) and not isinstance(values[0], str):
        raise RuleError(f"{where}: {op.value} takes a string")
    if op in ORDERING and isinstance(values[0], bool):
        raise RuleError(f"{where}: {op.value} compares numbers or strings")
    if op is Op.BETWEEN:
        low, high = values
        if isinstance(low, bool) or type(low) is not type(high):
            raise RuleError(f"{where}: between takes two numbers or two strings")


def _check_text(*texts: object) -> None:
    # PostgreSQL text cannot hold NUL: such a rule could be neither stored nor compared.
    if any(isinstance(t, str) and "\x00" in t for t in texts):
        raise RuleError("text in a rule may not contain the NUL character (U+0000)")


def _check_window(where: str, window: Window | None) -> None:
    if window is None:
        return
    if window.within_days is not None:
        if not 1 <= window.within_days <= MAX_DAYS:
            raise RuleError(f"{where}: window must be 1 to {MAX_DAYS} days")
    elif window.start is None or window.end is None or window.start >= window.end:
        raise RuleError(f"{where}: a window's start must come before its end")


def _check_field(node: FieldCond) -> None:
    field, op, where = node.field, node.op, node.field
    if field.startswith(("traits.", "computed.")):
        if len(field.split(".", 1)[1]) == 0:
            raise RuleError(f"{where}: name the field after the dot")
        _check_operands(where, op, node.values, node.days, allow_days=True)
    elif field.startswith("consent."):
        if not field.removeprefix("consent.").strip("."):
            raise RuleError(f"{where}: name the channel after the dot (consent.sms, consent.email.marketing)")
        if op not in (Op.EQ, Op.NEQ, Op.EXISTS) or any(not isinstance(v, bool) for v in node.values):
            raise RuleError(f"{where}: consent compares with true or false (=, != or exists)")
        _check_operands(where, op, node.values, node.days, allow_days=False)
    elif field in SCALAR_FIELDS:
        if op not in (Op.EQ, Op.NEQ, Op.IN, Op.EXISTS, Op.STARTS_WITH) or any(
            not isinstance(v, str) for v in node.values
        ):
            raise RuleError(f"{where}: compares with strings (=, !=, in, starts_with, exists)")
        _check_operands(where, op, node.values, node.days, allow_days=False)
    elif field in NUMERIC_FIELDS:
        if op in (Op.CONTAINS, Op.STARTS_WITH) or any(not _is_number(v) for v in node.values):
            raise RuleError(f"{where}: compares with numbers (=, !=, <, <=, >, >=, between, in)")
        if op is Op.EXISTS:
            # every snapshot carries a balance (0 without points): 'exists' would hold for everyone
            raise RuleError(f"{where}: every person has a balance (0 without points); ask '{where} > 0'")
        _check_operands(where, op, node.values, node.days, allow_days=False)
    elif field == "tags":
        if op not in (Op.CONTAINS, Op.EXISTS):
            raise RuleError("tags: use 'tags contains \"tag\"' or 'tags exists'")
        _check_operands(where, op, node.values, node.days, allow_days=False)
    else:
        raise RuleError(
            f"unknown field {field!r}: use traits.<name>, computed.<name>, consent.<channel>, "
            "lifecycle_stage, tier, rfm_group, points_balance or tags"
        )


def validate(node: Node) -> None:
    count = 0

    def visit(item: Node, depth: int) -> None:
        nonlocal count
        # event filters count as conditions: the limit bounds the SQL a rule compiles to
        count += 1 + len(item.filters) if isinstance(item, EventCond) else 1
        if depth > MAX_DEPTH:
            raise RuleError(f"rule nests deeper than {MAX_DEPTH} levels")
        if count > MAX_NODES:
            raise RuleError(f"rule has more than {MAX_NODES} conditions")
        if isinstance(item, (All, Any_)):
            if len(item.items) < 2:
                raise RuleError("a group needs at least two conditions")
            for child in item.items:
                visit(child, depth + 1)
        elif isinstance(item, Not):
            visit(item.item, depth + 1)
        elif isinstance(item, FieldCond):
            _check_text(item.field, *item.values)
            _check_field(item)
        elif isinstance(item, EventCond):
            where = f"event({item.name!r})"
            _check_text(item.name, *(t for f in item.filters for t in (f.prop, *f.values)))
            if not item.name.strip() or len(item.name) > 200:
                raise RuleError("event name must be 1 to 200 characters")
            if item.count_op not in COMPARISONS or not 0 <= item.count <= 1_000_000:
                raise RuleError(f"{where}: count must be a comparison with 0 to 1,000,000")
            _check_window(where, item.window)
            for f in item.filters:
                if not f.prop:
                    raise RuleError(f"{where}: a filter needs a property name")
                _check_operands(f"{where} where {f.prop}", f.op, f.values, 0, allow_days=False)
        elif isinstance(item, OrderCond):
            where = f"orders.{item.aggregate}"
            if item.item is not None:
                _check_text(item.item.sku, item.item.category, item.item.product_tag)
            _check_text(item.store_tag, item.staff_tag)
            if item.aggregate not in AGGREGATES:
                raise RuleError(f"unknown aggregate {item.aggregate!r}")
            if item.op not in COMPARISONS or not item.value.is_finite():
                raise RuleError(f"{where}: compare with a number")
            _check_window(where, item.window)
            if item.item is not None and not (item.item.sku or item.item.category or item.item.product_tag):
                raise RuleError(f"{where}: a product filter needs sku, category or tag")
            if item.item is not None and item.item.category and "" in item.item.category.split("/"):
                raise RuleError(f'{where}: product.category is a path like "outdoor/poles" (no empty parts)')
        elif isinstance(item, Member):
            if not _SEGMENT_ID.match(item.segment_id):
                raise RuleError(f"segment({item.segment_id!r}): not a segment id")
        else:  # pragma: no cover - the AST has no other node
            raise RuleError(f"unknown node {item!r}")

    visit(node, 0)
