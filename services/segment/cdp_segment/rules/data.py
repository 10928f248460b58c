"""What the evaluators read about a person: the projection, as plain Python."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

# Profile's default workspace currency: what a person's snapshot without one means.
DEFAULT_CURRENCY = "CNY"


@dataclass(frozen=True)
class EventFact:
    name: str
    time: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    message_id: str = ""


@dataclass(frozen=True)
class ItemFact:
    sku: str = ""
    category: str = ""
    product_id: str = ""


@dataclass(frozen=True)
class OrderFact:
    order_id: str
    time: datetime
    total_minor: int
    status: str = "completed"  # completed, refunded, cancelled
    store_id: str = ""
    staff_id: str = ""
    items: tuple[ItemFact, ...] = ()
    # ISO 4217; "" (not announced) counts as the workspace currency.
    currency: str = ""


@dataclass
class PersonFacts:
    person_id: str
    traits: dict[str, Any] = field(default_factory=dict)
    computed: dict[str, Any] = field(default_factory=dict)
    lifecycle_stage: str | None = None
    tier: str | None = None
    rfm_group: str | None = None
    tags: frozenset[str] = frozenset()
    consent: dict[str, bool] = field(default_factory=dict)
    points_balance: int | None = None
    # Names of PII traits that are set: their values never travel, so only `exists` sees them.
    pii_traits: frozenset[str] = frozenset()
    events: list[EventFact] = field(default_factory=list)
    orders: list[OrderFact] = field(default_factory=list)
    memberships: frozenset[str] = frozenset()
    # The workspace currency (from the snapshot): only orders in it count in sums and averages.
    currency: str = DEFAULT_CURRENCY

    def money(self, order: OrderFact) -> bool:
        """Whether ``order`` counts in orders.sum and orders.avg."""
        return order.currency in ("", self.currency)


@dataclass
class WorkspaceFacts:
    """Tags of products, stores and staff: (kind, object id) -> tags; and the workspace time zone
    (where a date-only value without an offset starts)."""

    object_tags: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    zone: tzinfo = UTC

    def tags_of(self, kind: str, object_id: str) -> frozenset[str]:
        return self.object_tags.get((kind, object_id), frozenset())
