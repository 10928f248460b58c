"""Prometheus metrics of the profile service (the kit's consumer, outbox and RPC metrics come on top)."""

from __future__ import annotations

from prometheus_client import Counter

BACKGROUND_FAILURES = Counter(
    "cdp_profile_background_failures_total",
    "Profiles background work could not save (logged; a timer is postponed, a re-evaluation skipped)",
    ["work"],
)
EVENTS_REJECTED = Counter(
    "cdp_profile_events_rejected_total", "Resolved events not stored (logged with the reason)", ["reason"]
)
EVENTS_ADJUSTED = Counter(
    "cdp_profile_events_adjusted_total",
    "Events stored with a part not applied as sent: a time clamped, a trait dropped, an order event for another"
    " person's order (logged with the reason)",
    ["reason"],
)
