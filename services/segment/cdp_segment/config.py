from __future__ import annotations

from dataclasses import dataclass

from cdpkit.config import CommonSettings, env

SCHEMA = "segment"


@dataclass(frozen=True, kw_only=True)
class Settings(CommonSettings):
    grpc_port: int = env("CDP_SEGMENT_GRPC_PORT", 50063, help="gRPC port of the segment service")
    metrics_port: int = env("CDP_SEGMENT_METRICS_PORT", 9463, help="Prometheus /metrics port; 0 picks a free one")
