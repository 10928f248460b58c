"""Prometheus metrics of the profile service (the kit's consumer, outbox and RPC metrics come on top)."""

from __future__ import annotations

from prometheus_client import Counter

TIMER_FAILURES = Counter(
    "cdp_profile_timer_failures_total", "Profiles whose timer round failed (postponed, retried later)"
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
