"""The text form of rules: ``parse(text) -> Node`` and ``render(node) -> text``.

    orders.count(within 30d) >= 2 and order.store.tag = "low-performing"
        and not event("Store Visited", within 180d)

``render`` prints the canonical form; ``parse(render(n)) == normalise(n)`` for every valid
rule. Parse errors say where (line, column, offset) and what was expected. Grammar:

    expr       = and_expr { "or" and_expr }
    and_expr   = unary { "and" unary }
    unary      = "not" unary | "(" expr ")" | atom
    atom       = event | orders | order_sugar | member | field_cond
    event      = "event" "(" STRING [ "," window ] [ "," "where" filter { "and" filter } ] ")" [ cmp INT ]
    orders     = ("orders.count" | "orders.sum" | "orders.avg") "(" [ arg { "," arg } ] ")" cmp NUMBER
    arg        = window | ("product.sku" | "product.category" | "product.tag" | "store.tag" | "staff.tag") "=" STRING
    order_sugar= "order." ("store.tag" | "staff.tag" | "product.sku" | "product.category" | "product.tag") "=" STRING
    member     = "segment" "(" STRING ")"
    field_cond = NAME ( cmp literal | "between" literal "and" literal | "in" "[" literal { "," literal } "]"
                      | "contains" literal | "starts_with" literal | "exists"
                      | "within" "last" DAYS | "more" "than" DAYS "ago" )
    window     = "within" DAYS | "between" DATE "and" DATE
    cmp        = "=" | "!=" | "<" | "<=" | ">" | ">="
    DAYS       = digits "d"        DATE = YYYY-MM-DD[Thh:mm[:ss[.ffffff]]][Z or ±hh:mm] (no offset: the zone given)
    NAME       = name { "." name } [ "." STRING ]   (traits."first-name"); a filter property is a name or a STRING
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal

from cdp_segment.rules.ast import (
    COMPARISONS,
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
from cdp_segment.rules.memory import wall_time, zone_of
from cdp_segment.rules.validate import RuleError, validate

MAX_RULE_LENGTH = 20_000
_DATE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?(Z|[+-]\d{2}:\d{2})?", re.ASCII
)


class RuleSyntaxError(RuleError):
    def __init__(self, text: str, offset: int, expected: str, found: str) -> None:
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        super().__init__(f"line {line}, column {column}: expected {expected}, found {found}")
        self.offset = offset
        self.line = line
        self.column = column
        self.expected = expected
        self.found = found


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<date>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)?(?:Z|[+-]\d{2}:\d{2})?)(?![\w.:])
  | (?P<days>\d+d)(?![\w.])
  | (?P<number>-?\d+(?:\.\d+)?)(?![\w.])
  | (?P<op><=|>=|!=|=|<|>)
  | (?P<punct>[()\[\],])
  | (?P<name>[^\W\d][\w]*(?:\.[^\W\d][\w]*)*(?:\."(?:[^"\\]|\\.)*")?)
  | (?P<junk>[^\s()\[\],"]+)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # string, date, days, number, op, punct, name, end
    text: str
    offset: int

    def describe(self) -> str:
        return "end of rule" if self.kind == "end" else repr(self.text)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # only an unterminated string gets here
            raise RuleSyntaxError(text, position, "a string closed by '\"'", "an unterminated string")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, match.group(), position))
        position = match.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


ORDER_ARGS = ("product.sku", "product.category", "product.tag", "store.tag", "staff.tag")
_CMP = {op.value: op for op in COMPARISONS}


class _Parser:
    def __init__(self, text: str, zone: tzinfo) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0
        self.zone = zone

    # helpers
    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def fail(self, expected: str) -> RuleSyntaxError:
        return RuleSyntaxError(self.text, self.token.offset, expected, self.token.describe())

    def is_word(self, *words: str) -> bool:
        return self.token.kind == "name" and self.token.text in words

    def take(self) -> Token:
        token = self.token
        self.index += 1
        return token

    def expect(self, kind: str, text: str | None = None, what: str | None = None) -> Token:
        if self.token.kind != kind or (text is not None and self.token.text != text):
            raise self.fail(what or repr(text) if text else what or kind)
        return self.take()

    def word(self, word: str) -> None:
        if not self.is_word(word):
            raise self.fail(repr(word))
        self.take()

    # grammar
    def parse(self) -> Node:
        if self.token.kind == "end":
            raise self.fail("a condition")
        node = self.expr()
        if self.token.kind != "end":
            raise self.fail("'and', 'or' or end of rule")
        return node

    def expr(self) -> Node:
        items = [self.and_expr()]
        while self.is_word("or"):
            self.take()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Any_(tuple(items))

    def and_expr(self) -> Node:
        items = [self.unary()]
        while self.is_word("and"):
            self.take()
            items.append(self.unary())
        return items[0] if len(items) == 1 else All(tuple(items))

    def unary(self) -> Node:
        if self.is_word("not"):
            self.take()
            return Not(self.unary())
        if self.token.kind == "punct" and self.token.text == "(":
            self.take()
            node = self.expr()
            self.expect("punct", ")", "')'")
            return node
        return self.atom()

    def atom(self) -> Node:
        token = self.token
        if token.kind != "name":
            raise self.fail("a condition (a field name, event(...), orders.count(...), segment(...), 'not' or '(')")
        if token.text == "event" and self.tokens[self.index + 1].text == "(":
            return self.event()
        if token.text in ("orders.count", "orders.sum", "orders.avg"):
            return self.orders()
        if token.text.startswith("order."):
            return self.order_sugar()
        if token.text == "segment" and self.tokens[self.index + 1].text == "(":
            self.take()
            self.expect("punct", "(", "'('")
            segment_id = self.string()
            self.expect("punct", ")", "')'")
            return Member(segment_id)
        return self.field_condition()

    def string(self) -> str:
        token = self.expect("string", what="a string in double quotes")
        try:
            return json.loads(token.text)
        except ValueError:  # a bad escape (\q) or a raw control character (a newline)
            self.index -= 1
            raise self.fail('a string with JSON escapes only (\\" \\\\ \\n \\t \\uXXXX)') from None

    def literal(self) -> Scalar:
        token = self.token
        if token.kind == "string":
            return self.string()
        if token.kind == "number":
            self.take()
            return Decimal(token.text)
        if self.is_word("true", "false"):
            self.take()
            return token.text == "true"
        raise self.fail("a value (a string, a number, true or false)")

    def days(self) -> int:
        token = self.expect("days", what="a number of days like 30d")
        return int(token.text[:-1])

    def date(self) -> datetime:
        token = self.expect("date", what="a date like 2025-06-18, 2025-06-18T08:00 or 2025-06-18T08:00+08:00")
        match = _DATE.fullmatch(token.text)
        try:
            if match is None:
                raise ValueError(token.text)
            return wall_time(match.groups()[:7], zone_of(match.group(8), self.zone))
        except (ValueError, OverflowError):
            self.index -= 1
            raise self.fail("a valid calendar date and time between the years 1 and 9999") from None

    def window(self) -> Window:
        if self.is_word("within"):
            self.take()
            return Window(within_days=self.days())
        self.word("between")
        start = self.date()
        self.word("and")
        return Window(start=start, end=self.date())

    def comparison(self) -> Op:
        token = self.expect("op", what="a comparison (=, !=, <, <=, >, >=)")
        return _CMP[token.text]

    def field_tail(self) -> tuple[Op, tuple[Scalar, ...], int]:
        token = self.token
        if token.kind == "op":
            op = self.comparison()
            return op, (self.literal(),), 0
        if self.is_word("between"):
            self.take()
            low = self.literal()
            self.word("and")
            return Op.BETWEEN, (low, self.literal()), 0
        if self.is_word("in"):
            self.take()
            self.expect("punct", "[", "'['")
            values = [self.literal()]
            while self.token.text == ",":
                self.take()
                values.append(self.literal())
            self.expect("punct", "]", "',' or ']'")
            return Op.IN, tuple(values), 0
        if self.is_word("contains"):
            self.take()
            return Op.CONTAINS, (self.literal(),), 0
        if self.is_word("starts_with"):
            self.take()
            return Op.STARTS_WITH, (self.literal(),), 0
        if self.is_word("exists"):
            self.take()
            return Op.EXISTS, (), 0
        if self.is_word("within"):
            self.take()
            self.word("last")
            return Op.WITHIN_LAST, (), self.days()
        if self.is_word("more"):
            self.take()
            self.word("than")
            days = self.days()
            self.word("ago")
            return Op.MORE_THAN_AGO, (), days
        raise self.fail(
            "an operator (=, !=, <, <=, >, >=, between, in, contains, starts_with, exists, within last, more than)"
        )

    def name(self) -> str:
        """A field name; its last part may be quoted (traits."first-name")."""
        token = self.take()
        head, quote, quoted = token.text.partition('."')
        if not quote:
            return head
        try:
            return f"{head}.{json.loads(quote[1:] + quoted)}"
        except ValueError:
            self.index -= 1
            raise self.fail("a name with JSON escapes only") from None

    def field_condition(self) -> Node:
        name = self.name()
        op, values, days = self.field_tail()
        return FieldCond(name, op, values, days)

    def event(self) -> Node:
        self.take()
        self.expect("punct", "(", "'('")
        name = self.string()
        window: Window | None = None
        filters: list[PropFilter] = []
        while self.token.text == ",":
            self.take()
            if self.is_word("where") and not filters:
                self.take()
                filters.append(self.prop_filter())
                while self.is_word("and"):
                    self.take()
                    filters.append(self.prop_filter())
            elif self.is_word("within", "between") and window is None and not filters:
                window = self.window()
            else:
                raise self.fail("'within', 'between' or 'where'" if not filters else "')'")
        self.expect("punct", ")", "')' or ','")
        count_op, count = Op.GTE, 1
        if self.token.kind == "op":
            count_op = self.comparison()
            token = self.expect("number", what="a whole number")
            if "." in token.text or token.text.startswith("-"):
                self.index -= 1
                raise self.fail("a whole number of events")
            count = int(token.text)
        return EventCond(name, tuple(filters), window, count_op, count)

    def prop_filter(self) -> PropFilter:
        if self.token.kind == "string":  # any property name: "utm-source"
            name = self.string()
        elif self.token.kind == "name" and '."' not in self.token.text:
            name = self.take().text
        else:
            raise self.fail("a property name")
        op, values, _days = self.field_tail()
        if op in (Op.WITHIN_LAST, Op.MORE_THAN_AGO):
            raise RuleSyntaxError(
                self.text, self.tokens[self.index - 1].offset, "a value comparison", "a relative date"
            )
        return PropFilter(name, op, values)

    def order_args(self) -> tuple[Window | None, ItemFilter | None, str, str]:
        window: Window | None = None
        picked: dict[str, str] = {}
        self.expect("punct", "(", "'('")
        while self.token.text != ")":
            if picked or window:
                self.expect("punct", ",", "',' or ')'")
            if self.is_word("within", "between"):
                if window is not None:
                    raise self.fail("one window at most")
                window = self.window()
            elif self.token.kind == "name" and self.token.text in ORDER_ARGS:
                key = self.take().text
                if key in picked:
                    self.index -= 1
                    raise self.fail(f"{key} at most once")
                self.expect("op", "=", "'='")
                picked[key] = self.string()
            else:
                raise self.fail("'within', 'between', " + ", ".join(ORDER_ARGS) + " or ')'")
        self.take()
        item = None
        if any(k.startswith("product.") for k in picked):
            item = ItemFilter(
                sku=picked.get("product.sku", ""),
                category=picked.get("product.category", ""),
                product_tag=picked.get("product.tag", ""),
            )
        return window, item, picked.get("store.tag", ""), picked.get("staff.tag", "")

    def orders(self) -> Node:
        aggregate = self.take().text.split(".")[1]
        window, item, store_tag, staff_tag = self.order_args()
        op = self.comparison()
        token = self.expect("number", what="a number")
        return OrderCond(aggregate, op, Decimal(token.text), window, item, store_tag, staff_tag)

    def order_sugar(self) -> Node:
        token = self.take()
        key = token.text.removeprefix("order.")
        if key not in ORDER_ARGS:
            self.index -= 1
            raise self.fail("order." + " or order.".join(ORDER_ARGS))
        self.expect("op", "=", "'='")
        value = self.string()
        item = None
        if key.startswith("product."):
            field = {"product.sku": "sku", "product.category": "category", "product.tag": "product_tag"}[key]
            item = ItemFilter(**{field: value})
        return OrderCond(
            "count",
            Op.GTE,
            Decimal(1),
            None,
            item,
            value if key == "store.tag" else "",
            value if key == "staff.tag" else "",
        )


def parse(text: str, zone: tzinfo = UTC, *, checked: bool = True) -> Node:
    """The rule in ``text``, normalised and validated; :class:`RuleSyntaxError` otherwise. Dates
    and times without an offset are in ``zone`` (the workspace time zone for what a client
    writes; canonical text always carries its offsets, older stored text meant UTC).
    ``checked=False`` for stored rules: they were validated when saved, and a check added since
    must not make a stored segment unreadable."""
    if len(text) > MAX_RULE_LENGTH:
        raise RuleSyntaxError(text[:100], 0, f"at most {MAX_RULE_LENGTH} characters", f"{len(text)}")
    node = normalise(_Parser(text, zone).parse())
    if checked:
        validate(node)
    return node


# Printing


def _literal(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f") if value == value.to_integral_value() else format(value, "f")
        return "0" if text in ("-0", "") else text
    return json.dumps(value, ensure_ascii=False)


def _date(moment: datetime, zone: tzinfo) -> str:
    """An instant as the wall time in ``zone`` with its offset: 2026-06-01+08:00 (midnight),
    2026-06-18T10:30+08:00, 2026-06-18T02:30:00.000001Z."""
    local = moment.astimezone(zone)
    offset = local.utcoffset() or timedelta(0)
    if offset % timedelta(minutes=1) or abs(offset) >= timedelta(hours=24):
        local, offset = moment.astimezone(UTC), timedelta(0)  # a local mean time offset: say it in UTC
    text = f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
    if (local.hour, local.minute, local.second, local.microsecond) != (0, 0, 0, 0):
        text += f"T{local.hour:02d}:{local.minute:02d}"
        if local.second or local.microsecond:
            text += f":{local.second:02d}" + (f".{local.microsecond:06d}".rstrip("0") if local.microsecond else "")
    if not offset:
        return text + "Z"
    minutes = abs(offset) // timedelta(minutes=1)
    return text + f"{'-' if offset < timedelta(0) else '+'}{minutes // 60:02d}:{minutes % 60:02d}"


def _window(window: Window, zone: tzinfo) -> str:
    if window.within_days is not None:
        return f"within {window.within_days}d"
    return f"between {_date(window.start, zone)} and {_date(window.end, zone)}"


# A name part printed bare; any other is quoted (traits."first-name").
_BARE_NAME = re.compile(r"[^\W\d]\w*(?:\.[^\W\d]\w*)*")


def _field(name: str) -> str:
    for prefix in ("traits.", "computed.", "consent."):
        if name.startswith(prefix):
            key = name[len(prefix) :]
            return name if _BARE_NAME.fullmatch(key) else prefix + json.dumps(key, ensure_ascii=False)
    return name


def _prop(name: str) -> str:
    return name if _BARE_NAME.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _tail(op: Op, values: tuple[Scalar, ...], days: int) -> str:
    if op in COMPARISONS:
        return f"{op.value} {_literal(values[0])}"
    if op is Op.BETWEEN:
        return f"between {_literal(values[0])} and {_literal(values[1])}"
    if op is Op.IN:
        return "in [" + ", ".join(_literal(v) for v in values) + "]"
    if op in (Op.CONTAINS, Op.STARTS_WITH):
        return f"{op.value} {_literal(values[0])}"
    if op is Op.EXISTS:
        return "exists"
    if op is Op.WITHIN_LAST:
        return f"within last {days}d"
    return f"more than {days}d ago"


def render(node: Node, zone: tzinfo = UTC) -> str:
    """The canonical text of ``node``; window instants are printed in ``zone`` with their offset."""
    return _render(normalise(node), zone)


def _render(node: Node, zone: tzinfo) -> str:
    if isinstance(node, All):
        return " and ".join(f"({_render(i, zone)})" if isinstance(i, Any_) else _render(i, zone) for i in node.items)
    if isinstance(node, Any_):
        return " or ".join(f"({_render(i, zone)})" if isinstance(i, All) else _render(i, zone) for i in node.items)
    if isinstance(node, Not):
        inner = _render(node.item, zone)
        return f"not ({inner})" if isinstance(node.item, (All, Any_)) else f"not {inner}"
    if isinstance(node, FieldCond):
        return f"{_field(node.field)} {_tail(node.op, node.values, node.days)}"
    if isinstance(node, EventCond):
        parts = [json.dumps(node.name, ensure_ascii=False)]
        if node.window:
            parts.append(_window(node.window, zone))
        if node.filters:
            parts.append("where " + " and ".join(f"{_prop(f.prop)} {_tail(f.op, f.values, 0)}" for f in node.filters))
        text = f"event({', '.join(parts)})"
        if (node.count_op, node.count) != (Op.GTE, 1):
            text += f" {node.count_op.value} {node.count}"
        return text
    if isinstance(node, OrderCond):
        args = [_window(node.window, zone)] if node.window else []
        if node.item:
            for key, value in (
                ("product.sku", node.item.sku),
                ("product.category", node.item.category),
                ("product.tag", node.item.product_tag),
            ):
                if value:
                    args.append(f"{key} = {_literal(value)}")
        if node.store_tag:
            args.append(f"store.tag = {_literal(node.store_tag)}")
        if node.staff_tag:
            args.append(f"staff.tag = {_literal(node.staff_tag)}")
        return f"orders.{node.aggregate}({', '.join(args)}) {node.op.value} {_literal(node.value)}"
    return f"segment({_literal(node.segment_id)})"
