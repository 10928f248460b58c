from __future__ import annotations

from dataclasses import dataclass

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

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.timer_batch <= 10_000:
            raise ValueError("CDP_PROFILE_TIMER_BATCH must be between 1 and 10000")
        if self.timer_interval_seconds <= 0:
            raise ValueError("CDP_PROFILE_TIMER_INTERVAL_SECONDS must be positive")
        if not 0 <= self.partition_months_ahead <= 24:
            raise ValueError("CDP_PROFILE_PARTITION_MONTHS_AHEAD must be between 0 and 24")
