from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cdpkit.config import CommonSettings, env

SCHEMA = "segment"
# DESIGN: calendars in the workspace time zone, by default China's.
DEFAULT_TIME_ZONE = "Asia/Shanghai"


@dataclass(frozen=True, kw_only=True)
class Settings(CommonSettings):
    grpc_port: int = env("CDP_SEGMENT_GRPC_PORT", 50063, help="gRPC port of the segment service")
    metrics_port: int = env("CDP_SEGMENT_METRICS_PORT", 9463, help="Prometheus /metrics port; 0 picks a free one")
    consumer_batch: int = env(
        "CDP_SEGMENT_CONSUMER_BATCH", 50, help="announcements fetched (and applied in one transaction) per batch"
    )
    consumer_linger_ms: float = env(
        "CDP_SEGMENT_CONSUMER_LINGER_MS",
        0.0,
        help="a profile-change batch that is not full waits for more until its oldest announcement is this old",
    )
    consumer_coalesce: bool = env(
        "CDP_SEGMENT_CONSUMER_COALESCE",
        True,
        help="the profile-change batches the partitions of a replica bring at the same moment are applied in one"
        " transaction (false: one transaction per partition; docs/segment.md)",
    )
    timer_poll_seconds: float = env(
        "CDP_SEGMENT_TIMER_POLL_SECONDS", 1.0, help="how often due membership timers are looked for"
    )
    time_zone: str = env(
        "CDP_SEGMENT_TIME_ZONE",
        DEFAULT_TIME_ZONE,
        help="IANA time zone of a workspace profile has announced no settings for (its calendar dates)",
    )
    rfm_interval_seconds: float = env(
        "CDP_SEGMENT_RFM_INTERVAL_SECONDS",
        3600.0,
        help="how often RFM thresholds and groups are recomputed per workspace (0: only on request)",
    )
    crosssell_interval_seconds: float = env(
        "CDP_SEGMENT_CROSSSELL_INTERVAL_SECONDS",
        3600.0,
        help="how often each workspace's co-purchase counts (product companions) are recounted (0: at every request)",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.consumer_batch <= 500:
            raise ValueError("CDP_SEGMENT_CONSUMER_BATCH must be between 1 and 500")
        if not 0 <= self.consumer_linger_ms <= 1000:
            raise ValueError("CDP_SEGMENT_CONSUMER_LINGER_MS must be between 0 and 1000")
        if not 0.01 <= self.timer_poll_seconds <= 60:
            raise ValueError("CDP_SEGMENT_TIMER_POLL_SECONDS must be between 0.01 and 60")
        if self.rfm_interval_seconds < 0:
            raise ValueError("CDP_SEGMENT_RFM_INTERVAL_SECONDS must not be negative")
        try:
            ZoneInfo(self.time_zone)
        except (ValueError, ZoneInfoNotFoundError):
            raise ValueError(f"CDP_SEGMENT_TIME_ZONE: unknown time zone {self.time_zone!r}") from None
        if self.crosssell_interval_seconds < 0:
            raise ValueError("CDP_SEGMENT_CROSSSELL_INTERVAL_SECONDS must not be negative")
