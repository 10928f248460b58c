from __future__ import annotations

from dataclasses import dataclass

from cdpkit.config import CommonSettings, PiiSettings, env

SCHEMA = "identity"


@dataclass(frozen=True, kw_only=True)
class Settings(PiiSettings, CommonSettings):
    grpc_port: int = env("CDP_IDENTITY_GRPC_PORT", 50061, help="gRPC port of the identity service")
    metrics_port: int = env("CDP_IDENTITY_METRICS_PORT", 9461, help="Prometheus /metrics port; 0 picks a free one")
    consumer_batch: int = env("CDP_IDENTITY_CONSUMER_BATCH", 20, help="raw-event messages fetched per batch")
    journal_days: int = env(
        "CDP_IDENTITY_JOURNAL_DAYS", 30, help="days of resolutions kept for replays and rule dry runs (0: none)"
    )
    conflict_days: int = env(
        "CDP_IDENTITY_CONFLICT_DAYS",
        90,
        help="days a recorded conflict is kept; one still happening after that is recorded and announced again",
    )
    locking: str = env(
        "CDP_IDENTITY_LOCKING",
        "rows",
        help="rows: resolvers lock only the persons they touch; workspace: one writer per workspace",
    )
    suggest_interval_seconds: float = env(
        "CDP_IDENTITY_SUGGEST_INTERVAL_SECONDS", 2.0, help="how often persons with new attributes are matched"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.journal_days <= 365:
            raise ValueError("CDP_IDENTITY_JOURNAL_DAYS must be between 0 and 365")
        if not 1 <= self.conflict_days <= 3650:
            raise ValueError("CDP_IDENTITY_CONFLICT_DAYS must be between 1 and 3650")
        if self.locking not in ("rows", "workspace"):
            raise ValueError("CDP_IDENTITY_LOCKING must be rows or workspace")
        if self.suggest_interval_seconds <= 0:
            raise ValueError("CDP_IDENTITY_SUGGEST_INTERVAL_SECONDS must be positive")
