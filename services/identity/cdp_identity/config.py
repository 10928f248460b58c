from __future__ import annotations

from dataclasses import dataclass

from cdpkit.config import CommonSettings, env

SCHEMA = "identity"


@dataclass(frozen=True, kw_only=True)
class Settings(CommonSettings):
    grpc_port: int = env("CDP_IDENTITY_GRPC_PORT", 50061, help="gRPC port of the identity service")
    metrics_port: int = env("CDP_IDENTITY_METRICS_PORT", 9461, help="Prometheus /metrics port; 0 picks a free one")
    consumer_batch: int = env("CDP_IDENTITY_CONSUMER_BATCH", 20, help="raw-event messages fetched per batch")
