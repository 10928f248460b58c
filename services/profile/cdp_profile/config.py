from __future__ import annotations

from dataclasses import dataclass

from cdpkit.config import CommonSettings, env

SCHEMA = "profile"


@dataclass(frozen=True, kw_only=True)
class Settings(CommonSettings):
    grpc_port: int = env("CDP_PROFILE_GRPC_PORT", 50062, help="gRPC port of the profile service")
    metrics_port: int = env("CDP_PROFILE_METRICS_PORT", 9462, help="Prometheus /metrics port; 0 picks a free one")
    consumer_batch: int = env("CDP_PROFILE_CONSUMER_BATCH", 20, help="resolved-event messages fetched per batch")
