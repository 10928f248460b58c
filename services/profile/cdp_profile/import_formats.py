"""Bulk import files, pure Python: lines in, validated records (or rejections with a reason) out.

Kinds: ``customers``, ``orders`` (with line items), ``products``, ``stores``. Formats:

- ``csv``: a header row, then one row per record; an order's line items are consecutive rows
  with the same ``order_id`` (order columns repeated or left empty on the following rows);
- ``jsonl``: one JSON object per line; an order carries its lines in ``items``;
- ``cdnow``: the CDNOW transaction files (Fader & Hardie's 1/10 sample and the master file):
  whitespace-separated ``customer [sample id] yyyymmdd cds dollars``, one transaction a line,
  a header line allowed. Each becomes an order of one line (sku ``CD``, the number of CDs) in USD.

Every record keeps the file line it starts on (its id in the import: message ids, checkpoints,
rejections) and the line it ends on. Field names and checks: docs/analytics.md.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from cdp_profile.domain import MAX_ORDER_LINES, OBJECT_ID, TAG
from cdp_profile.regions import region_code
from cdpkit.money import currency_exponent

KINDS = ("customers", "orders", "products", "stores")
FORMATS = ("csv", "jsonl", "cdnow")
MAX_LINE_BYTES = 1_000_000
MAX_TEXT = 500
MAX_TRAITS = 200
# Identifier types a customer row may carry as columns; each is also kept as a trait (PII ones
# sealed, like any trait of the workspace's pii_traits).
IDENTIFIER_COLUMNS = ("email", "phone", "wechat_openid", "wechat_unionid", "taobao_nick")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_ORDER_ID = re.compile(r"^\S{1,200}$")
_CUSTOMER_ID = re.compile(r"^\S{1,200}$")


class Rejected(ValueError):
    """A row that cannot be imported, and why."""


@dataclass(frozen=True)
class Line:
    """One physical line of the file (1-based number), decoded."""

    number: int
    text: str


@dataclass(frozen=True)
class Customer:
    customer_id: str
    traits: dict[str, Any]
    # (type, value) pairs: the customer id as ``id_type``, then identifier columns.
    identifiers: tuple[tuple[str, str], ...]
    # When the traits were true (provenance); None: the import's start.
    as_of: datetime | None = None


@dataclass(frozen=True)
class Order:
    customer_id: str
    order_id: str
    order_time: datetime
    currency: str
    total_minor: int | None
    items: tuple[dict[str, Any], ...] = ()
    store_id: str = ""
    channel: str = ""
    staff_id: str = ""

    def properties(self) -> dict[str, Any]:
        """The properties of the Order Completed event it stands for."""
        properties: dict[str, Any] = {"order_id": self.order_id, "currency": self.currency}
        if self.total_minor is not None:
            properties["total_minor"] = self.total_minor
        if self.items:
            properties["products"] = [dict(item) for item in self.items]
        for key in ("store_id", "channel", "staff_id"):
            if getattr(self, key):
                properties[key] = getattr(self, key)
        return properties


@dataclass(frozen=True)
class Catalogue:
    """A product or a store: the columns of its table (as BatchUpsert* validates them)."""

    kind: str
    row: dict[str, Any]

    @property
    def object_id(self) -> str:
        return self.row["product_id" if self.kind == "product" else "store_id"]


@dataclass(frozen=True)
class Record:
    line: int
    last_line: int
    raw: str
    value: Customer | Order | Catalogue | None = None
    reason: str = ""

    @property
    def rejected(self) -> bool:
        return self.value is None


@dataclass(frozen=True)
class Options:
    """What a file does not say: the workspace's currency and time zone, the identifier type of
    customer ids."""

    currency: str = "CNY"
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    id_type: str = "user_id"


# Values ----------------------------------------------------------------------------------------


def _text(value: Any, name: str, *, limit: int = MAX_TEXT) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise Rejected(f"{name}: must be text")
    text = str(value).strip()
    if len(text) > limit:
        raise Rejected(f"{name}: longer than {limit} characters")
    return text


def money_minor(value: Any, currency: str, name: str) -> int:
    """A decimal amount ("19.99") in minor units of ``currency``; must not be negative."""
    if isinstance(value, bool):
        raise Rejected(f"{name}: not an amount")
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise Rejected(f"{name}: {str(value)[:40]!r} is not an amount") from None
    if not amount.is_finite() or amount < 0:
        raise Rejected(f"{name}: must be a non-negative amount")
    minor = (amount * (10 ** currency_exponent(currency))).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    if minor >= 10**15:
        raise Rejected(f"{name}: too large")
    return int(minor)


def _minor(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise Rejected(f"{name}: must be a whole number of minor units")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise Rejected(f"{name}: must be a whole number of minor units") from None
    if not 0 <= number < 10**15:
        raise Rejected(f"{name}: must be between 0 and 10^15")
    return number


def parse_time(value: Any, zone: ZoneInfo, name: str) -> datetime:
    """RFC 3339 / ISO 8601 (no offset: the workspace's local time), or a day (YYYY-MM-DD,
    YYYYMMDD: its local midnight); returned in UTC."""
    text = _text(value, name)
    if not text:
        raise Rejected(f"{name}: is required")
    try:
        if re.fullmatch(r"\d{8}", text):
            day = date(int(text[:4]), int(text[4:6]), int(text[6:]))
            return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.combine(date.fromisoformat(text), time(0), tzinfo=zone).astimezone(UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Rejected(f"{name}: {text[:40]!r} is not a date or time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    if not 1900 <= moment.year <= 2200:
        raise Rejected(f"{name}: year out of range")
    return moment.astimezone(UTC)


def _quantity(value: Any, name: str) -> int:
    if value in (None, ""):
        return 1
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise Rejected(f"{name}: {str(value)[:40]!r} is not a quantity") from None
    if number != number.to_integral_value() or not 0 <= number <= 1_000_000:
        raise Rejected(f"{name}: must be a whole number between 0 and 1000000")
    return int(number)


def _currency(value: Any, options: Options) -> str:
    currency = _text(value, "currency").upper() or options.currency
    if not _CURRENCY.match(currency):
        raise Rejected("currency: must be an ISO 4217 code such as CNY")
    return currency


def _tags(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    tags = value if isinstance(value, list) else re.split(r"[|;]", str(value))
    cleaned = sorted({str(t).strip() for t in tags if str(t).strip()})
    if len(cleaned) > 100:
        raise Rejected("tags: at most 100")
    for tag in cleaned:
        if not TAG.match(tag):
            raise Rejected(f"tags: {tag[:40]!r} is not a tag (1-63 letters, digits, _ - : .)")
    return cleaned


# Records ---------------------------------------------------------------------------------------


def customer(fields: dict[str, Any], options: Options) -> Customer:
    customer_id = _text(fields.get("customer_id"), "customer_id", limit=200)
    if not customer_id or not _CUSTOMER_ID.match(customer_id):
        raise Rejected("customer_id: is required (no spaces, at most 200 characters)")
    traits: dict[str, Any] = {}
    identifiers = [(options.id_type, customer_id)]
    as_of = None
    for key, value in fields.items():
        if key == "customer_id" or value in (None, ""):
            continue
        if key == "updated_at":
            as_of = parse_time(value, options.zone, "updated_at")
            continue
        name = key.removeprefix("traits.")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}", name):
            raise Rejected(f"{key}: not a trait name")
        if isinstance(value, str):
            value = value.strip()
            if len(value) > 2000:
                raise Rejected(f"{key}: longer than 2000 characters")
        if name in IDENTIFIER_COLUMNS:
            identifiers.append((name, str(value)))
        traits[name] = value
    if len(traits) > MAX_TRAITS:
        raise Rejected(f"at most {MAX_TRAITS} traits")
    return Customer(customer_id, traits, tuple(identifiers), as_of)


def _order_head(fields: dict[str, Any], options: Options) -> dict[str, Any]:
    order_id = _text(fields.get("order_id"), "order_id", limit=200)
    if not order_id or not _ORDER_ID.match(order_id):
        raise Rejected("order_id: is required (no spaces, at most 200 characters)")
    customer_id = _text(fields.get("customer_id"), "customer_id", limit=200)
    if not customer_id or not _CUSTOMER_ID.match(customer_id):
        raise Rejected("customer_id: is required (no spaces, at most 200 characters)")
    currency = _currency(fields.get("currency"), options)
    total = None
    if fields.get("total_minor") not in (None, ""):
        total = _minor(fields["total_minor"], "total_minor")
    elif fields.get("total") not in (None, ""):
        total = money_minor(fields["total"], currency, "total")
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "order_time": parse_time(fields.get("order_time"), options.zone, "order_time"),
        "currency": currency,
        "total_minor": total,
        "store_id": _object_id(fields.get("store_id"), "store_id"),
        "channel": _text(fields.get("channel"), "channel", limit=64),
        "staff_id": _object_id(fields.get("staff_id"), "staff_id"),
    }


def _object_id(value: Any, name: str) -> str:
    text = _text(value, name, limit=128)
    if text and not OBJECT_ID.match(text):
        raise Rejected(f"{name}: {text[:40]!r} is not an id ([A-Za-z0-9][A-Za-z0-9._-]*)")
    return text


def order_item(fields: dict[str, Any], currency: str, name: str = "item") -> dict[str, Any] | None:
    """One line item (None when the row names no product)."""
    product_id = _object_id(fields.get("product_id"), f"{name}.product_id")
    sku = _text(fields.get("sku"), f"{name}.sku", limit=200)
    if not (product_id or sku):
        return None
    item: dict[str, Any] = {
        "product_id": product_id,
        "sku": sku,
        "category": _text(fields.get("category"), f"{name}.category", limit=200),
        "quantity": _quantity(fields.get("quantity"), f"{name}.quantity"),
    }
    if fields.get("price_minor") not in (None, ""):
        item["price_minor"] = _minor(fields["price_minor"], f"{name}.price_minor")
    elif fields.get("price") not in (None, ""):
        item["price_minor"] = money_minor(fields["price"], currency, f"{name}.price")
    return {k: v for k, v in item.items() if v != ""}


def order(head: dict[str, Any], items: list[dict[str, Any]]) -> Order:
    if len(items) > MAX_ORDER_LINES:
        raise Rejected(f"order {head['order_id']}: more than {MAX_ORDER_LINES} line items")
    return Order(items=tuple(items), **head)


def catalogue(kind: str, fields: dict[str, Any], options: Options) -> Catalogue:
    key = "product_id" if kind == "products" else "store_id"
    object_id = _text(fields.get(key), key, limit=128)
    if not object_id or not OBJECT_ID.match(object_id):
        raise Rejected(f"{key}: is required ([A-Za-z0-9][A-Za-z0-9._-]{{0,127}})")
    known = {key, "tags", "display_name", "name"}
    row: dict[str, Any] = {key: object_id, "tags": _tags(fields.get("tags"))}
    row["display_name"] = _text(fields.get("display_name") or fields.get("name"), "display_name")
    if kind == "products":
        columns = ("sku", "category", "brand")
        known |= {*columns, "price", "price_minor", "currency"}
        for column in columns:
            row[column] = _text(fields.get(column), column)
        currency = _text(fields.get("currency"), "currency").upper()
        if currency and not _CURRENCY.match(currency):
            raise Rejected("currency: must be an ISO 4217 code such as CNY")
        row["currency"] = currency
        if fields.get("price_minor") not in (None, ""):
            row["price_minor"] = _minor(fields["price_minor"], "price_minor")
        elif fields.get("price") not in (None, ""):
            row["price_minor"] = money_minor(fields["price"], currency or options.currency, "price")
        else:
            row["price_minor"] = 0
    else:
        columns = ("code", "city", "address")
        known |= set(columns)
        for column in columns:
            row[column] = _text(fields.get(column), column)
        row["region_code"] = region_code(row["city"], row["address"])
    attributes = {k: v for k, v in fields.items() if k not in known and v not in (None, "")}
    if len(orjson.dumps(attributes)) > 16_384:
        raise Rejected("attributes: at most 16 KB")
    row["attributes"] = attributes
    return Catalogue("product" if kind == "products" else "store", row)


# Files -----------------------------------------------------------------------------------------


def decode_lines(chunks: Iterable[bytes]) -> Iterator[Line | Record]:
    """Numbered lines of a byte stream (a line that is not UTF-8 or too long is a rejection)."""
    for number, raw in enumerate(chunks, start=1):
        if len(raw) > MAX_LINE_BYTES:
            yield Record(number, number, raw[:200].decode(errors="replace"), reason="line longer than 1 MB")
            continue
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            yield Record(number, number, raw.decode(errors="replace").rstrip("\r\n"), reason="not UTF-8")
            continue
        if number == 1:
            text = text.removeprefix("\ufeff")
        yield Line(number, text)


def records(kind: str, fmt: str, lines: Iterable[Line | Record], options: Options) -> Iterator[Record]:
    """The records of a file, in file order (rejections included)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if fmt == "cdnow":
        if kind != "orders":
            raise ValueError("the cdnow format holds orders only")
        yield from _cdnow(lines, options)
    elif fmt == "jsonl":
        yield from _jsonl(kind, lines, options)
    elif fmt == "csv":
        yield from _csv(kind, lines, options)
    else:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}")


def _one(kind: str, fields: dict[str, Any], options: Options) -> Customer | Order | Catalogue:
    if kind == "customers":
        return customer(fields, options)
    if kind == "orders":
        head = _order_head(fields, options)
        raw_items = fields.get("items")
        raw_items = [] if raw_items is None else raw_items
        if not isinstance(raw_items, list):
            raise Rejected("items: must be a list of line items")
        items = []
        for i, raw in enumerate(raw_items):
            if not isinstance(raw, dict):
                raise Rejected(f"items[{i}]: must be an object")
            item = order_item(raw, head["currency"], f"items[{i}]")
            if item is None:
                raise Rejected(f"items[{i}]: names no product (product_id or sku)")
            items.append(item)
        return order(head, items)
    return catalogue(kind, fields, options)


def _jsonl(kind: str, lines: Iterable[Line | Record], options: Options) -> Iterator[Record]:
    for line in lines:
        if isinstance(line, Record):
            yield line
            continue
        if not line.text.strip():
            continue
        try:
            fields = orjson.loads(line.text)
        except orjson.JSONDecodeError as exc:
            yield Record(line.number, line.number, line.text, reason=f"not JSON: {exc}")
            continue
        if not isinstance(fields, dict):
            yield Record(line.number, line.number, line.text, reason="not a JSON object")
            continue
        try:
            yield Record(line.number, line.number, line.text, _one(kind, fields, options))
        except Rejected as exc:
            yield Record(line.number, line.number, line.text, reason=str(exc))


def _csv(kind: str, lines: Iterable[Line | Record], options: Options) -> Iterator[Record]:
    """CSV rows; rows of one order (consecutive, same order_id) become one record."""
    header: list[str] | None = None
    pending: list[tuple[Line, dict[str, str]]] = []

    def flush() -> Iterator[Record]:
        if not pending:
            return
        first, last = pending[0][0].number, pending[-1][0].number
        raw = "\n".join(line.text for line, _ in pending)
        try:
            head = _order_head(pending[0][1], options)
            items = []
            for line, fields in pending:
                if _order_head(fields | _fill(fields, pending[0][1]), options) != head:
                    raise Rejected(f"line {line.number}: the rows of order {head['order_id']} disagree")
                item = order_item(fields, head["currency"])
                if item is not None:
                    items.append(item)
            yield Record(first, last, raw, order(head, items))
        except Rejected as exc:
            yield Record(first, last, raw, reason=str(exc))
        pending.clear()

    for line in lines:
        if isinstance(line, Record):
            yield line
            continue
        if not line.text.strip():
            continue
        try:
            values = next(csv.reader([line.text]))
        except csv.Error as exc:
            yield Record(line.number, line.number, line.text, reason=f"not CSV: {exc}")
            continue
        if header is None:
            header = [h.strip() for h in values]
            if len(set(header)) != len(header) or not all(header):
                raise ValueError("the CSV header names a column twice or leaves one empty")
            continue
        if len(values) != len(header):
            yield from flush()
            yield Record(
                line.number, line.number, line.text, reason=f"{len(values)} columns, the header has {len(header)}"
            )
            continue
        fields = dict(zip(header, values, strict=True))
        if kind != "orders":
            try:
                yield Record(line.number, line.number, line.text, _one(kind, fields, options))
            except Rejected as exc:
                yield Record(line.number, line.number, line.text, reason=str(exc))
            continue
        if pending and fields.get("order_id", "").strip() != pending[0][1].get("order_id", "").strip():
            yield from flush()
        pending.append((line, fields))
    yield from flush()


def _fill(fields: dict[str, str], first: dict[str, str]) -> dict[str, str]:
    """Order columns a following row of the same order leaves empty take the first row's values."""
    return {k: first.get(k, "") for k, v in fields.items() if v == "" and k not in _ITEM_COLUMNS}


_ITEM_COLUMNS = frozenset({"product_id", "sku", "category", "quantity", "price", "price_minor"})


def _cdnow(lines: Iterable[Line | Record], options: Options) -> Iterator[Record]:
    """CDNOW transactions: ``customer [sample id] yyyymmdd cds dollars`` (a day: local midnight)."""
    per_day: dict[tuple[str, str], int] = {}
    for line in lines:
        if isinstance(line, Record):
            yield line
            continue
        parts = line.text.split()
        if not parts:
            continue
        if not parts[0].isdigit():
            if line.number == 1:
                continue  # the master file's header
            yield Record(line.number, line.number, line.text, reason="customer id: must be digits")
            continue
        if len(parts) not in (4, 5):
            yield Record(line.number, line.number, line.text, reason=f"{len(parts)} fields, expected 4 or 5")
            continue
        customer_id, day, cds, dollars = parts[0], *parts[-3:]
        try:
            when = parse_time(day, options.zone, "date")
            quantity = _quantity(cds, "cds")
            total = money_minor(dollars, "USD", "dollars")
        except Rejected as exc:
            yield Record(line.number, line.number, line.text, reason=str(exc))
            continue
        n = per_day.get((customer_id, day), 0) + 1
        per_day[(customer_id, day)] = n
        item = {"sku": "CD", "quantity": quantity}
        if quantity:
            item["price_minor"] = round(total / quantity)
        value = Order(customer_id, f"cdnow-{customer_id}-{day}-{n}", when, "USD", total, (item,))
        yield Record(line.number, line.number, line.text, value)
