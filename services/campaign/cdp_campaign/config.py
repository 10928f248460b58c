from __future__ import annotations

from dataclasses import dataclass

from cdpkit.config import CommonSettings, env

SCHEMA = "campaign"


@dataclass(frozen=True, kw_only=True)
class Settings(CommonSettings):
    grpc_port: int = env("CDP_CAMPAIGN_GRPC_PORT", 50064, help="gRPC port of the campaign service")
    metrics_port: int = env("CDP_CAMPAIGN_METRICS_PORT", 9464, help="Prometheus /metrics port; 0 picks a free one")
