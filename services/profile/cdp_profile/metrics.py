"""Prometheus metrics of the profile service (the kit's consumer, outbox and RPC metrics come on top)."""

from __future__ import annotations

from prometheus_client import Counter

TIMER_FAILURES = Counter(
    "cdp_profile_timer_failures_total", "Profiles whose timer round failed (postponed, retried later)"
)
