"""Profile rules, pure Python (no I/O): how events, orders, time and API calls change a profile.

Every change goes through :func:`_finish`, which derives the computed traits, the lifecycle
stage, the tier and the rule-based tags from the profile's state, and reports what changed in
the vocabulary of ``cdp.events.v1.ProfileChanged`` (``traits.<k>``, ``computed.<name>``,
``lifecycle_stage``, ``tier``, ``tags``, ``points_balance``, ``consent.<key>``,
``events:<name>``, ``orders``), the transitions it made, and when the profile next changes by
itself (the timer).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from cdp_profile.regions import region_code
from cdp_profile.rules import WindowedTrait, WorkspaceSettings
from cdpkit import money
from cdpkit.money import TOTAL_KEYS, currency_exponent

LIFECYCLE_STAGES = ("prospect", "new", "active", "loyal", "dormant", "churned")
EVENT_KINDS = {
    "Product Viewed": "product_viewed",
    "Product Added": "product_added",
    "Checkout Started": "checkout_started",
    "Order Completed": "order_completed",
    "Order Refunded": "order_refunded",
    "Order Cancelled": "order_cancelled",
    "Store Visited": "store_visited",
    "Coupon Redeemed": "coupon_redeemed",
    "Message Opened": "message_opened",
    "Message Clicked": "message_clicked",
}
ORDER_KINDS = frozenset({"order_completed", "order_refunded", "order_cancelled"})
CHANNELS = ("web", "app", "mini_program", "store", "marketplace")
# Object kinds: their collection (in resource names, and their table) and id key.
OBJECT_KINDS = {
    "product": ("products", "product_id"),
    "store": ("stores", "store_id"),
    "staff": ("staff", "staff_id"),
}
CHANNEL_ALIASES = {
    **{c: c for c in CHANNELS},
    "h5": "web",
    "pc": "web",
    "wap": "web",
    "website": "web",
    "ios": "app",
    "android": "app",
    "miniprogram": "mini_program",
    "mini-program": "mini_program",
    "weapp": "mini_program",
    "wechat_mini_program": "mini_program",
    "pos": "store",
    "offline": "store",
    "taobao": "marketplace",
    "tmall": "marketplace",
    "jd": "marketplace",
    "douyin": "marketplace",
}
MAX_ORDER_LINES = 500
# Object ids are the shop's own ids, as events carry them (product_id, store_id, staff_id).
OBJECT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Computed traits set by the customer-value models (cdp_profile.predictions), not by events;
# expected_purchases_<n>w too.
PREDICTION_NAMES = frozenset({"p_alive", "churn_risk", "expected_order_value_minor", "predicted_clv_minor"})
_HORIZON_NAME = re.compile(r"^expected_purchases_\d+w$")


def is_prediction_name(name: str) -> bool:
    return name in PREDICTION_NAMES or bool(_HORIZON_NAME.match(name))


# Bounds of what one order event may say (larger values are refused at the consumer's edge, and
# clamped here for events stored before the check): one order, line or refund at most 10^12 minor
# units (10 billion yuan), a line at most a million units.
MAX_MINOR = 10**12
MAX_QUANTITY = 10**6
# Traits one identify (event or API call) may carry, their keys' length, a value's JSON size.
MAX_TRAITS = 200
MAX_TRAIT_KEY = 128
MAX_TRAIT_BYTES = 4096
# How far ahead of the service's clock a consent statement may be dated (clocks differ a little).
CONSENT_CLOCK_SKEW = timedelta(minutes=5)
REFUND_KEYS = ("total", "amount", "refund_amount", "revenue")


@lru_cache(maxsize=4096)
def iso(moment: datetime) -> str:
    """RFC 3339 UTC with fixed width, so strings compare like times (the same few moments recur:
    a batch's now, events' times)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# Inputs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewEvent:
    """An event stored for the first time (replays never reach the domain)."""

    message_id: str
    person_id: str
    type: str
    event: str
    event_time: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)
    # Identify calls and API trait updates: set, set once, unset.
    traits: Mapping[str, Any] = field(default_factory=dict)
    set_once: Mapping[str, Any] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    channel: str = ""
    store_id: str = ""
    staff_id: str = ""
    # Who said it (trait source priority): context.source, else the channel.
    source: str = ""

    @property
    def kind(self) -> str:
        return EVENT_KINDS.get(self.event, "") if self.type == "track" else ""


def normalise_channel(value: Any) -> str:
    return CHANNEL_ALIASES.get(str(value).strip().lower(), "") if value else ""


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = mapping.get(key)
        if value not in (None, ""):
            return value
    return None


# Amounts are read as every service reads them (cdpkit.money): campaign counts goal revenue so.
money_minor = money.to_minor
_amount = money.amount_minor


def number(value: Any) -> int | float | None:
    """A finite JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def clean_text(value: Any, limit: int = 200) -> str:
    """Text for a column: Postgres text and jsonb cannot hold NUL characters."""
    return str(value).replace("\x00", "")[:limit] if value is not None else ""


def _bounded(minor: int) -> int:
    return max(0, min(minor, MAX_MINOR))


# Orders ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderLine:
    product_id: str = ""
    sku: str = ""
    category: str = ""
    price_minor: int = 0
    quantity: int = 1


@dataclass(frozen=True)
class Order:
    order_id: str
    person_id: str
    currency: str = ""
    total_minor: int = 0
    channel: str = ""
    store_id: str = ""
    staff_id: str = ""
    # None until an Order Completed was seen (a refund or a cancellation may arrive first).
    order_time: datetime | None = None
    items: tuple[OrderLine, ...] = ()
    # Refund message id -> the refund as sent (see ``refund_minor``); older rows hold minor units
    # (None: whatever is left).
    refunds: Mapping[str, Any] = field(default_factory=dict)
    cancelled: bool = False
    points_earned: int = 0
    # The Order Completed that created it (splits move orders with it).
    message_id: str = ""

    @property
    def completed(self) -> bool:
        return self.order_time is not None

    @property
    def refunded_minor(self) -> int:
        amounts = [refund_minor(self, refund) for refund in self.refunds.values()]
        if any(amount is None for amount in amounts):
            return self.total_minor
        return min(self.total_minor, sum(amounts))

    @property
    def net_minor(self) -> int:
        return 0 if self.cancelled else self.total_minor - self.refunded_minor

    @property
    def status(self) -> str:
        if self.cancelled:
            return "cancelled"
        if not self.completed:
            return "pending"
        refunded = self.refunded_minor
        if self.refunds and refunded >= self.total_minor:
            return "refunded"
        return "partially_refunded" if refunded else "completed"

    @property
    def counted(self) -> bool:
        """Counts as a purchase: completed, neither cancelled nor refunded in full."""
        return self.status in ("completed", "partially_refunded")


def _currency(value: Any) -> str:
    text = str(value or "").strip().upper()
    return text if len(text) == 3 and text.isascii() and text.isalpha() else ""


def _quantity(item: Mapping[str, Any]) -> int | None:
    value = number(item.get("quantity"))
    return None if value is None else max(0, min(int(value), MAX_QUANTITY))


def _product_key(item: Mapping[str, Any]) -> tuple[str, str]:
    return clean_text(_first(item, "product_id", "productId", "id")), clean_text(item.get("sku"))


def _lines(properties: Mapping[str, Any], currency: str) -> tuple[OrderLine, ...]:
    products = properties.get("products")
    if not isinstance(products, list):
        return ()
    lines = []
    for item in products[:MAX_ORDER_LINES]:
        if not isinstance(item, Mapping):
            continue
        quantity = _quantity(item)
        product_id, sku = _product_key(item)
        lines.append(
            OrderLine(
                product_id=product_id,
                sku=sku,
                category=clean_text(item.get("category")),
                price_minor=_bounded(_amount(item, "price_minor", ("price",), currency) or 0),
                quantity=1 if quantity is None else quantity,
            )
        )
    return tuple(lines)


def _refund_of(properties: Mapping[str, Any]) -> dict[str, Any]:
    """A refund as sent, kept until it can be read against its order (whose currency and lines
    may not be known yet): an amount (``minor`` or a decimal ``amount``), else the products
    refunded (a partial refund in the Segment spec), else nothing (the rest of the order)."""
    refund: dict[str, Any] = {}
    currency = _currency(properties.get("currency"))
    if currency:
        refund["currency"] = currency
    minor = number(properties.get("total_minor"))
    if minor is not None and float(minor).is_integer():
        refund["minor"] = _bounded(int(minor))
        return refund
    for key in REFUND_KEYS:
        if money_minor(properties.get(key), "XXX") is not None:  # a number: kept as its exact decimal text
            refund["amount"] = str(properties[key])[:40]
            return refund
    products = properties.get("products")
    if isinstance(products, list):
        lines = []
        for item in products[:MAX_ORDER_LINES]:
            if not isinstance(item, Mapping):
                continue
            product_id, sku = _product_key(item)
            line: dict[str, Any] = {"product_id": product_id, "sku": sku}
            quantity = _quantity(item)
            if quantity is not None:
                line["quantity"] = quantity
            price = number(item.get("price_minor"))
            if price is not None and float(price).is_integer():
                line["price_minor"] = _bounded(int(price))
            elif money_minor(item.get("price"), "XXX") is not None:
                line["price"] = str(item["price"])[:40]
            lines.append(line)
        if lines:
            refund["lines"] = lines
    return refund


def refund_minor(order: Order, refund: Any) -> int | None:
    """What one refund takes off ``order``, in its minor units; None: whatever is left.

    A refund in another currency than the order's takes nothing off (it cannot be compared; the
    consumer logs it). Listed products without an amount refund their price times the quantity
    (default: the whole line), prices from the refund or else from the order's line.
    """
    if refund is None or isinstance(refund, int):
        return refund  # rows stored before refunds were kept as sent
    if refund.get("currency") and order.currency and refund["currency"] != order.currency:
        return 0
    if "minor" in refund:
        return refund["minor"]
    if "amount" in refund:
        return _bounded(money_minor(refund["amount"], order.currency) or 0)
    if not refund.get("lines"):
        return None
    total = 0
    for line in refund["lines"]:
        match = next(
            (
                item
                for item in order.items
                if (line["product_id"] and item.product_id == line["product_id"])
                or (line["sku"] and item.sku == line["sku"])
            ),
            None,
        )
        quantity = line.get("quantity", match.quantity if match else 1)
        if "price_minor" in line:
            price = line["price_minor"]
        elif "price" in line:
            price = _bounded(money_minor(line["price"], order.currency) or 0)
        else:
            price = match.price_minor if match else 0
        total += price * quantity
    return _bounded(total)


def without_nul(value: Any) -> Any:
    """``value`` without NUL characters in its strings and keys (Postgres cannot store them)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {k.replace("\x00", ""): without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    return value


def order_id_of(event: NewEvent) -> str:
    if event.kind not in ORDER_KINDS:
        return ""
    return clean_text(_first(event.properties, "order_id", "orderId"))


def order_problem(event: NewEvent) -> str:
    """Why an order event's values cannot be applied ("" when they can): an amount, a price or
    the lines' sum beyond ``MAX_MINOR`` minor units, a quantity beyond ``MAX_QUANTITY``, more
    than ``MAX_ORDER_LINES`` products."""
    if event.kind not in ORDER_KINDS:
        return ""
    properties = event.properties
    currency = _currency(properties.get("currency")) or "XXX"  # unknown: two decimals
    keys = TOTAL_KEYS if event.kind == "order_completed" else REFUND_KEYS
    for key in ("total_minor", *keys):
        amount = (
            _amount(properties, key, (), currency)
            if key == "total_minor"
            else money_minor(properties.get(key), currency)
        )
        if amount is not None and abs(amount) > MAX_MINOR:
            return f"{key} is out of range"
        if amount is None and money.out_of_range(properties.get(key), currency):
            return f"{key} is out of range"
    products = properties.get("products")
    if not isinstance(products, list):
        return ""
    if len(products) > MAX_ORDER_LINES:
        return f"more than {MAX_ORDER_LINES} products"
    lines_total = 0
    for i, item in enumerate(products):
        if not isinstance(item, Mapping):
            continue
        quantity = number(item.get("quantity"))
        if quantity is not None and abs(quantity) > MAX_QUANTITY:
            return f"products[{i}].quantity is out of range"
        price = _amount(item, "price_minor", ("price",), currency)
        if (price is not None and abs(price) > MAX_MINOR) or (
            price is None and money.out_of_range(item.get("price"), currency)
        ):
            return f"products[{i}].price is out of range"
        lines_total += max(price or 0, 0) * (1 if quantity is None else max(int(quantity), 0))
    if lines_total > MAX_MINOR:
        return "the products' total is out of range"
    return ""


def apply_order_event(order: Order | None, event: NewEvent, settings: WorkspaceSettings) -> Order:
    """The order after one of its events (completed, refunded, cancelled), in any arrival order.

    The Order Completed decides the order's person and currency: a pending order (refunded or
    cancelled before it completed) is taken over by its buyer, and refunds are read in the
    currency of the order once known."""
    order_id = order_id_of(event)
    order = order or Order(order_id=order_id, person_id=event.person_id)
    properties = event.properties
    if event.kind == "order_completed":
        currency = _currency(properties.get("currency")) or order.currency or settings.currency
        lines = _lines(properties, currency)
        total = _amount(properties, "total_minor", TOTAL_KEYS, currency)
        if total is None:
            total = sum(line.price_minor * line.quantity for line in lines)
        return replace(
            order,
            person_id=event.person_id,
            currency=currency,
            total_minor=_bounded(total),
            channel=event.channel,
            store_id=event.store_id,
            staff_id=event.staff_id,
            order_time=event.event_time,
            items=lines,
            message_id=event.message_id,
        )
    if event.kind == "order_refunded":
        return replace(order, refunds={**order.refunds, event.message_id: _refund_of(properties)})
    return replace(order, cancelled=True)


def refund_in_another_currency(order: Order, message_id: str) -> bool:
    refund = order.refunds.get(message_id)
    return (
        isinstance(refund, dict) and bool(order.currency) and refund.get("currency", order.currency) != order.currency
    )


def order_targets(events: Iterable[NewEvent], orders: Mapping[str, Order]) -> tuple[dict[str, str], list]:
    """Whose order each order event changes, given the orders on file: (message id -> person id,
    notes as (message id, reason)).

    An order belongs to the person whose Order Completed created it. A refund or a cancellation
    changes the order whoever's event it is (a store or back office may have resolved to another
    person); one that comes before its Order Completed waits on a pending order that the buyer's
    Order Completed takes over. An Order Completed for an order another person completed changes
    nothing. All events of one order in one batch go to one person.
    """
    ordered = sorted((e for e in events if order_id_of(e)), key=lambda e: (e.event_time, e.message_id))
    owners = {order_id: o.person_id for order_id, o in orders.items() if o.completed}
    for event in ordered:
        if event.kind == "order_completed":
            owners.setdefault(order_id_of(event), event.person_id)
    holders = {order_id: o.person_id for order_id, o in orders.items() if not o.completed}
    targets: dict[str, str] = {}
    notes: list[tuple[str, str]] = []
    for event in ordered:
        order_id = order_id_of(event)
        owner = owners.get(order_id)
        if event.kind == "order_completed" and owner != event.person_id:
            notes.append((event.message_id, "order_completed_by_another_person"))
            continue
        target = owner or holders.setdefault(order_id, event.person_id)
        targets[event.message_id] = target
        if target != event.person_id:
            notes.append((event.message_id, "order_changed_for_its_owner"))
    return targets, notes


def order_aggregates(orders: Iterable[Order], settings: WorkspaceSettings, now: datetime) -> tuple[dict, str | None]:
    """The computed traits orders give, and when the rolling spend of the tier measure next drops."""
    counted = [o for o in orders if o.counted]
    money = [o for o in counted if o.currency == settings.currency]
    total = sum(o.net_minor for o in money)
    categories: dict[str, int] = {}
    stores: dict[str, int] = {}
    for order in counted:
        for line in order.items:
            if line.category:
                categories[line.category] = categories.get(line.category, 0) + max(line.quantity, 1)
        if order.store_id:
            stores[order.store_id] = stores.get(order.store_id, 0) + 1
    times = [o.order_time for o in counted if o.order_time]
    computed: dict[str, Any] = {
        "order_count": len(counted),
        "total_spent_minor": total,
        "refunded_minor": sum(o.refunded_minor for o in orders if o.completed and o.currency == settings.currency),
        "average_order_value_minor": (total * 2 + len(money)) // (2 * len(money)) if money else 0,
        "first_order_time": iso(min(times)) if times else None,
        "last_order_time": iso(max(times)) if times else None,
        "favourite_category": _favourite(categories),
        "favourite_store": _favourite(stores),
        "clv_historical_minor": total,
    }
    due = None
    days = settings.tiers.window_days if settings.tiers else None
    if days:
        start = now - timedelta(days=days)
        recent = [o for o in money if o.order_time and o.order_time > start]
        computed[settings.tiers.by] = sum(o.net_minor for o in recent)
        leaving = [o.order_time + timedelta(days=days) for o in recent if o.net_minor]
        due = iso(min(leaving)) if leaving else None
    return computed, due


def _favourite(counts: Mapping[str, int]) -> str | None:
    if not counts:
        return None
    return min(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]


# State ----------------------------------------------------------------------------------------


@dataclass
class ProfileState:
    person_id: str
    # Every trait's latest value (PII ones too: sealed at rest by the repository).
    traits: dict[str, Any] = field(default_factory=dict)
    # Trait key -> [event time (iso), source, 1 if unset]: the value's provenance.
    trait_meta: dict[str, list] = field(default_factory=dict)
    event_count: int = 0
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    # Computed traits as of the last change (names as in ProfileSnapshot.computed).
    computed: dict[str, Any] = field(default_factory=dict)
    # Counters behind computed traits: {"channels": {channel: n}, "windows": {name: {day: [n, sum]}},
    # "spend_due": iso}.
    stats: dict[str, Any] = field(default_factory=dict)
    lifecycle_stage: str = "prospect"
    lifecycle_at: datetime | None = None
    tier: str = ""
    tier_at: datetime | None = None
    # Tag -> {"source", "at", "expires"}.
    tags: dict[str, dict] = field(default_factory=dict)
    # "email" / "email.marketing" -> {"granted", "source", "at"}.
    consent: dict[str, dict] = field(default_factory=dict)
    # Unspent points, one lot per credit: {"ref", "order", "points", "at", "expires"}.
    points_lots: list[dict] = field(default_factory=list)
    version: int = 0

    @property
    def points_balance(self) -> int:
        return sum(lot["points"] for lot in self.points_lots)

    def copy(self) -> ProfileState:
        stats = dict(self.stats)
        if "channels" in stats:
            stats["channels"] = dict(stats["channels"])
        if "windows" in stats:
            stats["windows"] = {k: dict(v) for k, v in stats["windows"].items()}
        return self.with_fields(
            traits=dict(self.traits),
            trait_meta=dict(self.trait_meta),
            computed=dict(self.computed),
            stats=stats,
            tags=dict(self.tags),
            consent=dict(self.consent),
            points_lots=[dict(lot) for lot in self.points_lots],
        )

    def with_fields(self, **changes: Any) -> ProfileState:
        """``dataclasses.replace`` without its per-field work (a few per changed profile)."""
        copied = object.__new__(ProfileState)
        copied.__dict__ = {**self.__dict__, **changes}
        return copied


@dataclass(frozen=True)
class Transition:
    kind: str
    from_value: str
    to_value: str
    direction: str
    cause: str
    at: datetime


@dataclass(frozen=True)
class LedgerEntry:
    kind: str
    points: int
    balance_after: int
    reference: str
    reason: str
    created_at: datetime
    expires_at: datetime | None = None


@dataclass
class Change:
    state: ProfileState
    changed: dict[str, Any]
    transitions: list[Transition]
    trigger: NewEvent | None = None
    events: list[NewEvent] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    ledger: list[LedgerEntry] = field(default_factory=list)
    next_due: datetime | None = None
    moved: Any = None
    # (message id, reason) of event parts not applied as sent, for the service to log and count.
    notes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def announced(self) -> bool:
        return bool(self.changed or self.transitions or self.events or self.orders or self.ledger or self.moved)


class InsufficientPoints(Exception):
    def __init__(self, balance: int) -> None:
        super().__init__(f"the balance is {balance} points")
        self.balance = balance


# Traits ---------------------------------------------------------------------------------------


def _wins(meta: list | None, when: str, source: str, settings: WorkspaceSettings) -> bool:
    """Does a value said by ``source`` at ``when`` replace the current one?

    A more trusted source wins; between equally trusted ones the later statement wins, so an
    older event arriving late never overwrites a newer value (or a newer unset).
    """
    if meta is None:
        return True
    current_rank, new_rank = settings.source_rank(meta[1]), settings.source_rank(source)
    if new_rank != current_rank:
        return new_rank > current_rank
    return when >= meta[0]


def _apply_traits(state: ProfileState, event: NewEvent, settings: WorkspaceSettings, changed: dict) -> None:
    when = iso(event.event_time)
    for key, value in event.traits.items():
        if value is None:
            _unset(state, key, when, event.source, settings, changed)
            continue
        if _wins(state.trait_meta.get(key), when, event.source, settings):
            state.trait_meta[key] = [when, event.source, 0]
            if differs(state.traits.get(key, _MISSING), value):
                state.traits[key] = value
                changed[f"traits.{key}"] = value
    for key, value in event.set_once.items():
        meta = state.trait_meta.get(key)
        if value is not None and (meta is None or meta[2]):
            state.trait_meta[key] = [when, event.source, 0]
            state.traits[key] = value
            changed[f"traits.{key}"] = value
    for key in event.unset:
        _unset(state, key, when, event.source, settings, changed)


def _unset(state: ProfileState, key: str, when: str, source: str, settings: WorkspaceSettings, changed: dict) -> None:
    if _wins(state.trait_meta.get(key), when, source, settings):
        state.trait_meta[key] = [when, source, 1]
        if key in state.traits:
            del state.traits[key]
            changed[f"traits.{key}"] = None


_MISSING = object()


def differs(a: Any, b: Any) -> bool:
    """``a != b`` for JSON values, telling 1 from true and 0 from false at any depth (Python's
    ``1 == True`` would hide a trait turning from 1 into true from ``changed_fields``)."""
    kind = type(a)
    if kind is not type(b):
        return kind is bool or type(b) is bool or a != b  # 1 and 1.0 are the same JSON number
    if kind is dict:
        return a.keys() != b.keys() or any(differs(v, b[k]) for k, v in a.items())
    if kind is list:
        return len(a) != len(b) or any(differs(x, y) for x, y in zip(a, b, strict=True))
    return a != b


# Windows --------------------------------------------------------------------------------------


def _day(moment: datetime, settings: WorkspaceSettings) -> str:
    return _local_day(moment, settings.zone)


def _window_start(now: datetime, days: int, settings: WorkspaceSettings) -> str:
    """The first calendar day (workspace time zone) inside a window of ``days`` days ending today."""
    return _first_day(now, days, settings.zone)


# Time zone conversions are slow and a batch asks about the same moments again and again.
@lru_cache(maxsize=4096)
def _local_day(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).date().isoformat()


@lru_cache(maxsize=1024)
def _first_day(now: datetime, days: int, zone: ZoneInfo) -> str:
    return (now.astimezone(zone).date() - timedelta(days=days - 1)).isoformat()


def _add_to_windows(
    state: ProfileState,
    event: NewEvent,
    settings: WorkspaceSettings,
    now: datetime,
    windows: Sequence[WindowedTrait] | None = None,
) -> None:
    for window in settings.windowed_traits if windows is None else windows:
        if window.event != event.event:
            continue
        day = _day(event.event_time, settings)
        if day < _window_start(now, window.days, settings):
            continue
        amount = 1
        if window.sum_property:
            value = number(event.properties.get(window.sum_property))
            if value is None or abs(value) > MAX_MINOR:
                continue
            amount = value
        buckets = state.stats.setdefault("windows", {}).setdefault(window.name, {})
        count, total = buckets.get(day, (0, 0))
        buckets[day] = [count + 1, total + amount]


def windowed_values(state: ProfileState, settings: WorkspaceSettings, now: datetime) -> dict[str, Any]:
    """Declared windowed traits as of ``now`` (count, or sum of the property)."""
    values: dict[str, Any] = {}
    windows = state.stats.get("windows", {})
    for window in settings.windowed_traits:
        start = _window_start(now, window.days, settings)
        buckets = windows.get(window.name, {})
        index = 1 if window.sum_property else 0
        total = sum(v[index] for day, v in buckets.items() if day >= start)
        values[window.name] = int(total) if isinstance(total, float) and total.is_integer() else total
    return values


def _prune_windows(state: ProfileState, settings: WorkspaceSettings, now: datetime) -> None:
    windows = state.stats.get("windows")
    if not windows:
        return
    declared = {w.name: w for w in settings.windowed_traits}
    for name in list(windows):
        window = declared.get(name)
        if window is None:
            del windows[name]
            continue
        start = _window_start(now, window.days, settings)
        windows[name] = {day: v for day, v in windows[name].items() if day >= start}


def _next_window_expiry(state: ProfileState, settings: WorkspaceSettings) -> datetime | None:
    moments = []
    windows = state.stats.get("windows", {})
    for window in settings.windowed_traits:
        days = [day for day, v in windows.get(window.name, {}).items() if v[0]]
        if days:
            leaves = datetime.fromisoformat(min(days)).date() + timedelta(days=window.days)
            moments.append(datetime.combine(leaves, time(0), tzinfo=settings.zone).astimezone(UTC))
    return min(moments) if moments else None


# Points ---------------------------------------------------------------------------------------


def _lot_order(lot: dict) -> tuple:
    # Points that expire soonest go first; lots without expiry last; then the oldest.
    return (lot["expires"] is None, lot["expires"] or "", lot["at"])


def _take_points(state: ProfileState, amount: int, prefer_order: str = "") -> int:
    """Remove up to ``amount`` points, the preferred order's lot first, then oldest expiry first."""
    taken = 0
    lots = sorted(
        state.points_lots, key=lambda lot: (lot["order"] != prefer_order or not prefer_order, _lot_order(lot))
    )
    for lot in lots:
        if taken == amount:
            break
        use = min(lot["points"], amount - taken)
        lot["points"] -= use
        taken += use
    state.points_lots = [lot for lot in state.points_lots if lot["points"] > 0]
    return taken


def _credit(
    state: ProfileState, points: int, reference: str, now: datetime, expires: datetime | None, order: str = ""
) -> None:
    state.points_lots.append(
        {
            "ref": reference,
            "order": order,
            "points": points,
            "at": iso(now),
            "expires": iso(expires) if expires else None,
        }
    )


def order_points(order: Order, settings: WorkspaceSettings) -> int:
    rate = settings.points.per_currency_unit
    if not rate or not order.counted or order.currency != settings.currency:
        return 0
    return int(Decimal(order.net_minor) * Decimal(str(rate)) / (10 ** currency_exponent(order.currency)))


def _reconcile_order_points(
    state: ProfileState, order: Order, trigger: str, settings: WorkspaceSettings, now: datetime, ledger: list
) -> Order:
    target = order_points(order, settings)
    delta = target - order.points_earned
    if delta > 0:
        expire_days = settings.points.expire_after_days
        start = order.order_time or now
        expires = start + timedelta(days=expire_days) if expire_days else None
        reference = f"order:{order.order_id}:{trigger}"
        _credit(state, delta, reference, start, expires, order.order_id)
        ledger.append(
            LedgerEntry("earn", delta, state.points_balance, reference, f"order {order.order_id}", now, expires)
        )
        return replace(order, points_earned=target)
    if delta < 0:
        taken = _take_points(state, -delta, order.order_id)
        reference = f"order:{order.order_id}:{trigger}"
        reason = f"order {order.order_id} refunded or cancelled"
        if taken < -delta:
            reason += f" ({-delta - taken} points already spent)"
        if taken:
            ledger.append(LedgerEntry("refund", -taken, state.points_balance, reference, reason, now))
        return replace(order, points_earned=order.points_earned - taken)
    return order


def _expire_points(state: ProfileState, now: datetime, ledger: list) -> None:
    stamp = iso(now)
    due = [lot for lot in state.points_lots if lot["expires"] and lot["expires"] <= stamp]
    for lot in sorted(due, key=_lot_order):
        state.points_lots.remove(lot)
        ledger.append(
            LedgerEntry("expire", -lot["points"], state.points_balance, f"expire:{lot['ref']}", "points expired", now)
        )


# Derivation -----------------------------------------------------------------------------------


def lifecycle_stage(computed: Mapping[str, Any], settings: WorkspaceSettings, now: datetime) -> str:
    count = computed.get("order_count") or 0
    if not count or not computed.get("last_order_time"):
        return "prospect"
    rules = settings.lifecycle
    idle = now - from_iso(computed["last_order_time"])
    if idle >= timedelta(days=rules.churned_after_days):
        return "churned"
    if idle >= timedelta(days=rules.dormant_after_days):
        return "dormant"
    if count >= rules.loyal_min_orders:
        return "loyal"
    if count == 1 and now - from_iso(computed["first_order_time"]) < timedelta(days=rules.new_within_days):
        return "new"
    return "active"


def _next_lifecycle_change(computed: Mapping[str, Any], settings: WorkspaceSettings, now: datetime) -> datetime | None:
    if not computed.get("order_count") or not computed.get("last_order_time"):
        return None
    rules = settings.lifecycle
    last = from_iso(computed["last_order_time"])
    moments = [last + timedelta(days=rules.dormant_after_days), last + timedelta(days=rules.churned_after_days)]
    if computed["order_count"] == 1:
        moments.append(from_iso(computed["first_order_time"]) + timedelta(days=rules.new_within_days))
    future = [m for m in moments if m > now]
    return min(future) if future else None


def _birthday_month_day(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()[:10]
    for candidate in (text, text[5:]):
        parts = candidate.split("-")
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            month, day = int(parts[0]), int(parts[1])
            if 1 <= month <= 12 and 1 <= day <= 31:
                return f"{month:02d}-{day:02d}"
    return None


def _address_texts(traits: Mapping[str, Any]) -> list[str]:
    texts = []
    address = traits.get("address")
    if isinstance(address, str):
        texts.append(address)
    elif isinstance(address, Mapping):
        texts.extend(str(address[k]) for k in ("state", "province", "city", "district", "street") if address.get(k))
    for key in ("province", "city", "district"):
        if isinstance(traits.get(key), str):
            texts.append(traits[key])
    return texts


def _derive_computed(
    state: ProfileState,
    settings: WorkspaceSettings,
    now: datetime,
    orders: Sequence[Order] | None,
    traits_changed: bool = True,
) -> None:
    computed = state.computed
    computed["event_count"] = state.event_count
    computed["first_seen_time"] = iso(state.first_seen_at) if state.first_seen_at else None
    computed["last_seen_time"] = iso(state.last_seen_at) if state.last_seen_at else None
    if orders is not None:
        aggregates, spend_due = order_aggregates(orders, settings, now)
        computed.update(aggregates)
        state.stats["spend_due"] = spend_due
        # Everything is derived under these settings now (events after a settings change re-derive
        # a profile with an older version in full, so a new tier measure is never read as missing).
        state.stats["settings_version"] = settings.version
    else:
        for key, default in (("order_count", 0), ("total_spent_minor", 0), ("refunded_minor", 0)):
            computed.setdefault(key, default)
    computed["favourite_channel"] = _favourite(state.stats.get("channels", {}))
    if traits_changed:
        computed["birthday_month_day"] = _birthday_month_day(state.traits.get("birthday"))
        texts = _address_texts(state.traits)
        computed["region_code"] = (region_code(*texts) or None) if texts else None
    lots = sorted((lot for lot in state.points_lots if lot["expires"]), key=_lot_order)
    computed["next_points_expiry_time"] = lots[0]["expires"] if lots else None
    computed["next_points_expiry_points"] = (
        sum(lot["points"] for lot in lots if lot["expires"] == lots[0]["expires"]) if lots else None
    )
    _prune_windows(state, settings, now)
    computed.update(windowed_values(state, settings, now))
    for key in [k for k, v in computed.items() if v is None]:
        del computed[key]


def _rule_values(state: ProfileState) -> dict[str, Any]:
    values: dict[str, Any] = dict(state.computed)
    values["lifecycle_stage"] = state.lifecycle_stage
    values["tier"] = state.tier
    values["points_balance"] = state.points_balance
    for key, value in state.traits.items():
        values[f"traits.{key}"] = value
    for tag in state.tags:
        values[f"has_tag.{tag}"] = True
    return values


def _tier_value(state: ProfileState, settings: WorkspaceSettings) -> int:
    assert settings.tiers is not None
    if settings.tiers.by == "points_balance":
        return state.points_balance
    return int(state.computed.get(settings.tiers.by) or 0)


def next_due(state: ProfileState, settings: WorkspaceSettings, now: datetime) -> datetime | None:
    """When this profile next changes with nothing but time passing (the durable timer)."""
    moments = [_next_lifecycle_change(state.computed, settings, now), _next_window_expiry(state, settings)]
    moments += [from_iso(t["expires"]) for t in state.tags.values() if t.get("expires")]
    moments += [from_iso(lot["expires"]) for lot in state.points_lots if lot["expires"]]
    if state.stats.get("spend_due"):
        moments.append(from_iso(state.stats["spend_due"]))
    future = [m for m in moments if m is not None]
    return min(future) if future else None


def _finish(
    old: ProfileState,
    new: ProfileState,
    *,
    settings: WorkspaceSettings,
    now: datetime,
    cause: str,
    changed: dict[str, Any],
    orders: Sequence[Order] | None = None,
    trigger: NewEvent | None = None,
    events: Sequence[NewEvent] = (),
    changed_orders: Sequence[Order] = (),
    ledger: Sequence[LedgerEntry] = (),
    transitions: Sequence[Transition] = (),
) -> Change:
    transitions = list(transitions)
    ledger = list(ledger)
    # Manual (and journey) tags whose time is up go first, so rules see the profile without them.
    stamp = iso(now)
    for tag, assignment in list(new.tags.items()):
        if assignment.get("expires") and assignment["expires"] <= stamp:
            del new.tags[tag]
            transitions.append(Transition("tag_removed", tag, "", "", "time", now))
    _expire_points(new, now, ledger)
    traits_changed = cause in ("merge", "split") or any(key.startswith("traits.") for key in changed)
    _derive_computed(new, settings, now, orders, traits_changed)

    stage = lifecycle_stage(new.computed, settings, now)
    if stage != new.lifecycle_stage:
        transitions.append(Transition("lifecycle_stage", new.lifecycle_stage, stage, "", cause, now))
        new.lifecycle_stage, new.lifecycle_at = stage, now
    elif new.lifecycle_at is None:
        new.lifecycle_at = now
    tier = settings.tiers.tier_for(_tier_value(new, settings)) if settings.tiers else ""
    if tier != new.tier:
        direction = ""
        if settings.tiers:
            direction = "upgrade" if settings.tiers.rank(tier) > settings.tiers.rank(new.tier) else "downgrade"
        transitions.append(Transition("tier", new.tier, tier, direction, cause, now))
        new.tier, new.tier_at = tier, now

    # Rule tags: evaluated on every change, in declaration order (a rule may read has_tag.<t>).
    for rule in settings.tag_rules:
        holds = rule.when(_rule_values(new))
        current = new.tags.get(rule.tag)
        if holds and current is None:
            new.tags[rule.tag] = {"source": rule.source, "at": stamp, "expires": None}
            transitions.append(Transition("tag_added", "", rule.tag, "", rule.source, now))
        elif not holds and current is not None and current["source"] == rule.source:
            del new.tags[rule.tag]
            transitions.append(Transition("tag_removed", rule.tag, "", "", rule.source, now))
    # Tags left by rules that no longer exist are removed.
    declared = {r.source for r in settings.tag_rules}
    for tag, assignment in list(new.tags.items()):
        if assignment["source"].startswith("rule:") and assignment["source"] not in declared:
            del new.tags[tag]
            transitions.append(Transition("tag_removed", tag, "", "", assignment["source"], now))

    for key in set(old.computed) | set(new.computed):
        if old.computed.get(key) != new.computed.get(key):  # numbers, times, names: never true/false
            changed[f"computed.{key}"] = new.computed.get(key)
    if new.lifecycle_stage != old.lifecycle_stage:
        changed["lifecycle_stage"] = new.lifecycle_stage
    if new.tier != old.tier:
        changed["tier"] = new.tier
    if set(new.tags) != set(old.tags):
        changed["tags"] = sorted(new.tags)
    if new.points_balance != old.points_balance:
        changed["points_balance"] = new.points_balance
    for key in set(old.consent) | set(new.consent):
        before, after = old.consent.get(key), new.consent.get(key)
        if (before or {}).get("granted") != (after or {}).get("granted") or (before is None) != (after is None):
            changed[f"consent.{key}"] = after["granted"] if after else None
    for event in events:
        if event.event:
            changed[f"events:{event.event}"] = changed.get(f"events:{event.event}", 0) + 1
    # An order seen only through a refund is not announced until it completes (it is stored).
    announced_orders = [o.order_id for o in changed_orders if o.status != "pending"]
    if announced_orders:
        changed["orders"] = announced_orders
    change = Change(
        state=new,
        changed=changed,
        transitions=transitions,
        trigger=trigger,
        events=list(events),
        orders=list(changed_orders),
        ledger=ledger,
    )
    if change.announced:
        new.version = old.version + 1
    change.next_due = next_due(new, settings, now)
    return change


# Use cases ------------------------------------------------------------------------------------


def apply_events(
    current: ProfileState,
    events: Iterable[NewEvent],
    settings: WorkspaceSettings,
    now: datetime,
    orders: Mapping[str, Order] | None = None,
    *,
    foreign: Iterable[NewEvent] = (),
    targets: Mapping[str, str] | None = None,
    full: bool = False,
) -> Change | None:
    """The profile after ``events`` (all of ``current.person_id``), or None if there were none.

    ``orders``: every order of the person and every order the events name, by order id (None:
    the events touch no order). ``foreign``: other persons' refunds and cancellations of this
    person's orders (only their order part applies here). ``targets``: whose order each order
    event changes (:func:`order_targets`; computed here when not given). ``full``: re-derive the
    order values even when no order changed (the settings changed since the last change).
    """
    foreign = list(foreign)
    ordered = sorted([*events, *foreign], key=lambda e: (e.event_time, e.message_id))
    if not ordered:
        return None
    new = current.copy()
    changed: dict[str, Any] = {}
    all_orders = dict(orders) if orders is not None else None
    notes: list[tuple[str, str]] = []
    if all_orders is not None and targets is None:
        targets, notes = order_targets(ordered, all_orders)
    ledger: list[LedgerEntry] = []
    foreign_ids = {e.message_id for e in foreign}
    touched = _replay(new, ordered, settings, now, changed, all_orders, ledger, foreign_ids, targets or {}, notes)
    own = [e for e in ordered if e.message_id not in foreign_ids]
    change = _finish(
        current,
        new,
        settings=settings,
        now=now,
        cause="event",
        changed=changed,
        orders=(
            [o for o in all_orders.values() if o.person_id == current.person_id]
            if all_orders is not None and (touched or full)
            else None
        ),
        trigger=ordered[-1],
        events=own,
        changed_orders=list(touched.values()),
        ledger=ledger,
    )
    change.notes = notes
    return change


def _replay(
    new: ProfileState,
    ordered: Sequence[NewEvent],
    settings: WorkspaceSettings,
    now: datetime,
    changed: dict[str, Any],
    all_orders: dict[str, Order] | None,
    ledger: list[LedgerEntry],
    foreign_ids: set[str] = frozenset(),  # type: ignore[assignment]
    targets: Mapping[str, str] | None = None,
    notes: list | None = None,
) -> dict[str, Order]:
    """Apply events in order to ``new``; with ``all_orders``, the orders ``targets`` give this
    person and their points too. Events in ``foreign_ids`` change only orders."""
    touched: dict[str, Order] = {}
    channels = new.stats.setdefault("channels", {})
    for event in ordered:
        if event.message_id not in foreign_ids:
            new.event_count += 1
            if new.first_seen_at is None or event.event_time < new.first_seen_at:
                new.first_seen_at = event.event_time
            if new.last_seen_at is None or event.event_time > new.last_seen_at:
                new.last_seen_at = event.event_time
            if event.channel:
                channels[event.channel] = channels.get(event.channel, 0) + 1
            if event.traits or event.set_once or event.unset:
                _apply_traits(new, event, settings, changed)
            if settings.windowed_traits:
                _add_to_windows(new, event, settings, now)
        order_id = order_id_of(event) if all_orders is not None else ""
        if not order_id or (targets or {}).get(event.message_id) != new.person_id:
            continue  # no order, or another person's order (that person's change applies it)
        order = apply_order_event(all_orders.get(order_id), event, settings)
        if notes is not None and event.kind == "order_refunded" and refund_in_another_currency(order, event.message_id):
            notes.append((event.message_id, "refund_in_another_currency"))
        order = _reconcile_order_points(new, order, event.message_id, settings, now, ledger)
        all_orders[order_id] = touched[order_id] = order
    return touched


def recompute(
    current: ProfileState, settings: WorkspaceSettings, now: datetime, orders: Sequence[Order], cause: str
) -> Change:
    """Re-derive everything from the state and the person's orders: what time alone changes
    (lifecycle, tag and points expiry, windows, rolling spend; cause ``time``), new settings."""
    return _finish(current, current.copy(), settings=settings, now=now, cause=cause, changed={}, orders=orders)


def reevaluate(
    current: ProfileState,
    settings: WorkspaceSettings,
    now: datetime,
    orders: Sequence[Order],
    windows: Sequence[WindowedTrait] = (),
    events: Iterable[NewEvent] = (),
) -> Change:
    """The profile under new settings (cause ``manual``); ``windows`` (declared or redefined by
    them) are rebuilt from the person's stored ``events``, so they count from before they existed."""
    new = current.copy()
    if windows:
        buckets = new.stats.setdefault("windows", {})
        for window in windows:
            buckets[window.name] = {}
        for event in events:
            _add_to_windows(new, event, settings, now, windows)
    return _finish(current, new, settings=settings, now=now, cause="manual", changed={}, orders=orders)


def modify_tags(
    current: ProfileState,
    add: Sequence[tuple[str, datetime | None]],
    remove: Sequence[str],
    source: str,
    settings: WorkspaceSettings,
    now: datetime,
) -> Change:
    new = current.copy()
    transitions = []
    for tag in remove:
        if new.tags.pop(tag, None) is not None:
            transitions.append(Transition("tag_removed", tag, "", "", "manual", now))
    for tag, expires in add:
        existing = new.tags.get(tag)
        if existing is None:
            transitions.append(Transition("tag_added", "", tag, "", "manual", now))
        new.tags[tag] = {
            "source": source,
            "at": existing["at"] if existing else iso(now),
            "expires": iso(expires) if expires else None,
        }
    changed = {}
    if any(current.tags.get(tag) != new.tags.get(tag) for tag, _ in add):
        changed["tags"] = sorted(new.tags)  # a new source or expiry is a change even with the same names
    return _finish(current, new, settings=settings, now=now, cause="manual", changed=changed, transitions=transitions)


def _state_consent(
    state: ProfileState, key: str, granted: bool, source: str, statement_time: datetime, now: datetime
) -> None:
    """Record a consent statement unless a newer one is on file. One on file dated after ``now``
    (within the skew allowed, or stored before statements were bounded) is no later than this."""
    stamp = iso(statement_time)
    existing = state.consent.get(key)
    if existing is None or stamp >= existing["at"] or existing["at"] > iso(now):
        state.consent[key] = {"granted": granted, "source": source, "at": stamp}


def update_consent(
    current: ProfileState,
    channel: str,
    purpose: str,
    granted: bool,
    source: str,
    statement_time: datetime,
    settings: WorkspaceSettings,
    now: datetime,
) -> Change:
    new = current.copy()
    _state_consent(new, f"{channel}.{purpose}" if purpose else channel, granted, source, statement_time, now)
    return _finish(current, new, settings=settings, now=now, cause="manual", changed={})


def unsubscribe(
    current: ProfileState,
    channel: str,
    source: str,
    statement_time: datetime,
    settings: WorkspaceSettings,
    now: datetime,
) -> Change:
    """Withdraw ``channel`` and every purpose of it."""
    new = current.copy()
    for key in [channel, *[k for k in new.consent if k.startswith(channel + ".")]]:
        _state_consent(new, key, False, source, statement_time, now)
    return _finish(current, new, settings=settings, now=now, cause="manual", changed={})


def change_points(
    current: ProfileState,
    kind: str,
    points: int,
    reference: str,
    reason: str,
    settings: WorkspaceSettings,
    now: datetime,
) -> Change:
    """Earn, redeem or adjust; raises :class:`InsufficientPoints` rather than go below zero."""
    new = current.copy()
    ledger: list[LedgerEntry] = []
    _expire_points(new, now, ledger)
    if kind == "earn" or (kind == "adjust" and points > 0):
        expire_days = settings.points.expire_after_days if kind == "earn" else 0
        expires = now + timedelta(days=expire_days) if expire_days else None
        _credit(new, points, reference, now, expires)
        ledger.append(LedgerEntry(kind, points, new.points_balance, reference, reason, now, expires))
    else:
        amount = points if kind == "redeem" else -points
        if amount > new.points_balance:
            raise InsufficientPoints(new.points_balance)
        _take_points(new, amount)
        ledger.append(LedgerEntry(kind, -amount, new.points_balance, reference, reason, now))
    return _finish(current, new, settings=settings, now=now, cause="manual", changed={}, ledger=ledger)


def merge_states(
    survivor: ProfileState,
    merged: Sequence[ProfileState],
    settings: WorkspaceSettings,
    now: datetime,
    orders: Sequence[Order],
    renamed_references: Mapping[tuple[str, str], str] | None = None,
) -> Change:
    """The survivor after taking in the merged persons: every trait by its provenance, counters
    and windows added, tags and lots united, each consent statement by its time.

    ``renamed_references``: (merged person, reference) -> the reference its ledger entry got on
    the survivor (references stay unique per person); lots follow their entry, so their expiry
    entries (``expire:<reference>``) stay unique too."""
    renamed_references = renamed_references or {}
    new = survivor.copy()
    changed: dict[str, Any] = {}
    for other in merged:
        for key, meta in other.trait_meta.items():
            current = new.trait_meta.get(key)
            if _wins(current, meta[0], meta[1], settings) and (current is None or current != meta):
                new.trait_meta[key] = list(meta)
                if meta[2]:
                    if key in new.traits:
                        del new.traits[key]
                        changed[f"traits.{key}"] = None
                elif differs(new.traits.get(key, _MISSING), other.traits.get(key)):
                    new.traits[key] = other.traits.get(key)
                    changed[f"traits.{key}"] = new.traits[key]
        new.event_count += other.event_count
        seen = [t for t in (new.first_seen_at, other.first_seen_at) if t]
        new.first_seen_at = min(seen) if seen else None
        seen = [t for t in (new.last_seen_at, other.last_seen_at) if t]
        new.last_seen_at = max(seen) if seen else None
        channels = new.stats.setdefault("channels", {})
        for channel, count in other.stats.get("channels", {}).items():
            channels[channel] = channels.get(channel, 0) + count
        windows = new.stats.setdefault("windows", {})
        for name, buckets in other.stats.get("windows", {}).items():
            mine = windows.setdefault(name, {})
            for day, (count, total) in buckets.items():
                before = mine.get(day, (0, 0))
                mine[day] = [before[0] + count, before[1] + total]
        # What came from a merged person remembers whose it was ("by"), so a split can give it back.
        by = other.person_id
        for tag, assignment in other.tags.items():
            mine = new.tags.get(tag)
            if mine is None or (assignment["at"] < mine["at"] and not assignment["source"].startswith("rule:")):
                new.tags[tag] = {"by": by, **assignment}
        for key, statement in other.consent.items():
            mine = new.consent.get(key)
            if mine is None or statement["at"] > mine["at"]:
                new.consent[key] = {"by": by, **statement}
        for lot in other.points_lots:
            ref = renamed_references.get((other.person_id, lot["ref"]), lot["ref"])
            new.points_lots.append({"by": by, **lot, "ref": ref})
    return _finish(survivor, new, settings=settings, now=now, cause="merge", changed=changed, orders=orders)


@dataclass
class Holdings:
    """What a person holds beyond its events and orders: tags, consent statements, points lots."""

    tags: dict[str, dict] = field(default_factory=dict)
    consent: dict[str, dict] = field(default_factory=dict)
    lots: list[dict] = field(default_factory=list)

    def plus(self, other: Holdings) -> Holdings:
        """Both together: a tag or a consent key held by both keeps the newer statement."""
        tags = dict(self.tags)
        for tag, assignment in other.tags.items():
            if tag not in tags or assignment["at"] > tags[tag]["at"]:
                tags[tag] = assignment
        consent = dict(self.consent)
        for key, statement in other.consent.items():
            if key not in consent or statement["at"] > consent[key]["at"]:
                consent[key] = statement
        return Holdings(tags, consent, [*self.lots, *other.lots])


def split_holdings(
    state: ProfileState, leaving: Iterable[str], moved_orders: Iterable[str]
) -> tuple[Holdings, Holdings]:
    """(what ``state``'s person keeps, what goes) when the persons ``leaving`` split off.

    Tags, consent statements and points lots a merge brought from a leaving person (their "by")
    go back to it, with the points of the orders that move; what was stated on the merged
    profile stays. A consent withdrawal stays and also goes: it may have been either person's,
    and a shopper who withdrew must not be contacted through the other half.
    """
    leaving, moved_orders = set(leaving), set(moved_orders)
    kept, gone = Holdings(), Holdings()
    for tag, assignment in state.tags.items():
        (gone if assignment.get("by") in leaving else kept).tags[tag] = dict(assignment)
    for key, statement in state.consent.items():
        (gone if statement.get("by") in leaving else kept).consent[key] = dict(statement)
    for key, statement in kept.consent.items():
        if not statement["granted"] and (key not in gone.consent or gone.consent[key]["at"] < statement["at"]):
            gone.consent[key] = {k: v for k, v in statement.items() if k != "by"}
    for lot in state.points_lots:
        leaves = lot.get("order") in moved_orders if lot.get("order") else lot.get("by") in leaving
        (gone if leaves else kept).lots.append(dict(lot))
    return kept, gone


def rebuild(
    base: ProfileState,
    events: Sequence[NewEvent],
    orders: Sequence[Order],
    holdings: Holdings,
    settings: WorkspaceSettings,
    now: datetime,
    cause: str,
    *,
    dropped_events: int = 0,
    stored_since: datetime | None = None,
) -> Change:
    """The person recomputed from its own events and orders (a split): traits, counters and
    windows replayed; ``holdings`` are the tags (rule tags re-evaluated), consent and points
    lots it has now; tags it gained or lost are transitions with ``cause``.

    ``dropped_events`` of the person are no longer stored (retention; its oldest stored event is
    at ``stored_since``): they cannot be replayed, so what they said (their count, the first-seen
    time, traits stated before ``stored_since``) is carried over from ``base`` as it is."""
    fresh = ProfileState(
        person_id=base.person_id,
        # Predictions stay until the next recompute (they come from no event).
        computed={k: v for k, v in base.computed.items() if is_prediction_name(k)},
        lifecycle_stage=base.lifecycle_stage,
        lifecycle_at=base.lifecycle_at,
        tier=base.tier,
        tier_at=base.tier_at,
        tags={t: dict(a) for t, a in holdings.tags.items()},
        consent={k: dict(v) for k, v in holdings.consent.items()},
        points_lots=[dict(lot) for lot in holdings.lots],
        version=base.version,
    )
    if dropped_events > 0:
        fresh.event_count = dropped_events
        fresh.first_seen_at = base.first_seen_at
        horizon = iso(stored_since) if stored_since else None
        for key, meta in base.trait_meta.items():
            if horizon is None or meta[0] < horizon:
                fresh.trait_meta[key] = list(meta)
                if key in base.traits:
                    fresh.traits[key] = base.traits[key]
    ordered = sorted(events, key=lambda e: (e.event_time, e.message_id))
    _replay(fresh, ordered, settings, now, {}, None, [])
    state = fresh
    changed = {}
    for key in set(base.traits) | set(state.traits):
        if differs(base.traits.get(key, _MISSING), state.traits.get(key, _MISSING)):
            changed[f"traits.{key}"] = state.traits.get(key)
    transitions = [
        Transition("tag_added", "", tag, "", cause, now)
        for tag in sorted(set(state.tags) - set(base.tags))
        if not state.tags[tag]["source"].startswith("rule:")
    ] + [
        Transition("tag_removed", tag, "", "", cause, now)
        for tag in sorted(set(base.tags) - set(state.tags))
        if not base.tags[tag]["source"].startswith("rule:")
    ]
    return _finish(
        base, state, settings=settings, now=now, cause=cause, changed=changed, orders=orders, transitions=transitions
    )
