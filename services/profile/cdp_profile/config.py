from __future__ import annotations

from dataclasses import dataclass

from cdp_profile.rules import MIN_EVENT_RETENTION_DAYS
from cdpkit.config import CommonSettings, PiiSettings, env

SCHEMA = "profile"


@dataclass(frozen=True, kw_only=True)
class Settings(PiiSettings, CommonSettings):
    grpc_port: int = env("CDP_PROFILE_GRPC_PORT", 50062, help="gRPC port of the profile service")
    metrics_port: int = env("CDP_PROFILE_METRICS_PORT", 9462, help="Prometheus /metrics port; 0 picks a free one")
    consumer_batch: int = env("CDP_PROFILE_CONSUMER_BATCH", 20, help="resolved-event messages fetched per batch")
    timer_batch: int = env(
        "CDP_PROFILE_TIMER_BATCH", 500, help="due profile timers (lifecycle, expiry) taken per round"
    )
    timer_interval_seconds: float = env(
        "CDP_PROFILE_TIMER_INTERVAL_SECONDS", 1.0, help="how often the timer worker looks for due timers when idle"
    )
    partition_months_ahead: int = env(
        "CDP_PROFILE_PARTITION_MONTHS_AHEAD", 3, help="monthly event partitions created ahead of the current month"
    )
    event_retention_days: int = env(
        "CDP_PROFILE_EVENT_RETENTION_DAYS",
        730,
        help="stored events older than this are dropped, a month at a time (0: keep every event; else at least 400)",
    )
    prediction_interval_seconds: float = env(
        "CDP_PROFILE_PREDICTION_INTERVAL_SECONDS",
        86400.0,
        help="how often each workspace's customer-value models and predictions are recomputed (0: on request only)",
    )
    prediction_min_customers: int = env(
        "CDP_PROFILE_PREDICTION_MIN_CUSTOMERS", 100, help="customers a workspace needs before the schedule fits it"
    )
    prediction_horizon_weeks: int = env(
        "CDP_PROFILE_PREDICTION_HORIZON_WEEKS",
        12,
        help="weeks of expected purchases (computed.expected_purchases_<n>w)",
    )
    prediction_clv_months: int = env("CDP_PROFILE_PREDICTION_CLV_MONTHS", 12, help="months of predicted CLV")
    prediction_monthly_discount_rate: float = env(
        "CDP_PROFILE_PREDICTION_MONTHLY_DISCOUNT_RATE", 0.01, help="discount rate per month of the predicted CLV"
    )
    prediction_min_change: float = env(
        "CDP_PROFILE_PREDICTION_MIN_CHANGE",
        0.05,
        help="a prediction is announced when P(alive) moves this much, or another value by this share",
    )
    prediction_announce_batch: int = env(
        "CDP_PROFILE_PREDICTION_ANNOUNCE_BATCH", 2000, help="profiles announced per transaction after a recompute"
    )
    prediction_poll_seconds: float = env(
        "CDP_PROFILE_PREDICTION_POLL_SECONDS", 2.0, help="how often the prediction worker looks for queued jobs"
    )
    identity_target: str = env(
        "CDP_PROFILE_IDENTITY_TARGET",
        "127.0.0.1:50061",
        help="identity service (host:port) the bulk import resolves customer ids with",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.timer_batch <= 10_000:
            raise ValueError("CDP_PROFILE_TIMER_BATCH must be between 1 and 10000")
        if self.timer_interval_seconds <= 0:
            raise ValueError("CDP_PROFILE_TIMER_INTERVAL_SECONDS must be positive")
        if not 0 <= self.partition_months_ahead <= 24:
            raise ValueError("CDP_PROFILE_PARTITION_MONTHS_AHEAD must be between 0 and 24")
        if self.event_retention_days and not MIN_EVENT_RETENTION_DAYS <= self.event_retention_days <= 36_500:
            raise ValueError(
                f"CDP_PROFILE_EVENT_RETENTION_DAYS must be 0 (keep every event) or {MIN_EVENT_RETENTION_DAYS}-36500"
            )
        if self.prediction_interval_seconds < 0:
            raise ValueError("CDP_PROFILE_PREDICTION_INTERVAL_SECONDS must not be negative")
        if not 1 <= self.prediction_horizon_weeks <= 520:
            raise ValueError("CDP_PROFILE_PREDICTION_HORIZON_WEEKS must be between 1 and 520")
        if not 1 <= self.prediction_clv_months <= 120:
            raise ValueError("CDP_PROFILE_PREDICTION_CLV_MONTHS must be between 1 and 120")
        if not 0 <= self.prediction_monthly_discount_rate < 1:
            raise ValueError("CDP_PROFILE_PREDICTION_MONTHLY_DISCOUNT_RATE must be in [0, 1)")
        if not 0 < self.prediction_min_change < 1:
            raise ValueError("CDP_PROFILE_PREDICTION_MIN_CHANGE must be in (0, 1)")
        if not 1 <= self.prediction_announce_batch <= 50_000:
            raise ValueError("CDP_PROFILE_PREDICTION_ANNOUNCE_BATCH must be between 1 and 50000")
        if self.prediction_poll_seconds <= 0:
            raise ValueError("CDP_PROFILE_PREDICTION_POLL_SECONDS must be positive")
        if self.prediction_min_customers < 1:
            raise ValueError("CDP_PROFILE_PREDICTION_MIN_CUSTOMERS must be at least 1")
