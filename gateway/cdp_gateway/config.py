from __future__ import annotations

from dataclasses import dataclass

from cdpkit.config import CommonSettings, env

SCHEMA = "gateway"


@dataclass(frozen=True, kw_only=True)
class Settings(CommonSettings):
    http_host: str = env("CDP_GATEWAY_HTTP_HOST", "127.0.0.1", help="HTTP bind address (0.0.0.0 in containers)")
    http_port: int = env("CDP_GATEWAY_HTTP_PORT", 8080, help="HTTP port: collection API and JSON API")
    grpc_port: int = env("CDP_GATEWAY_GRPC_PORT", 50051, help="gRPC front door port")
    metrics_port: int = env("CDP_GATEWAY_METRICS_PORT", 9460, help="Prometheus /metrics port; 0 picks a free one")
    identity_target: str = env("CDP_IDENTITY_TARGET", "127.0.0.1:50061", help="host:port of the identity service")
    profile_target: str = env("CDP_PROFILE_TARGET", "127.0.0.1:50062", help="host:port of the profile service")
    segment_target: str = env("CDP_SEGMENT_TARGET", "127.0.0.1:50063", help="host:port of the segment service")
    campaign_target: str = env("CDP_CAMPAIGN_TARGET", "127.0.0.1:50064", help="host:port of the campaign service")
    backend_timeout_seconds: float = env(
        "CDP_GATEWAY_BACKEND_TIMEOUT_SECONDS", 10.0, help="deadline of a forwarded call when the caller sets none"
    )
    max_message_bytes: int = env("CDP_GATEWAY_MAX_MESSAGE_BYTES", 32 * 1024, help="largest single event (JSON bytes)")
    max_batch_bytes: int = env("CDP_GATEWAY_MAX_BATCH_BYTES", 500 * 1024, help="largest request body, after gunzip")
    max_api_body_bytes: int = env("CDP_GATEWAY_MAX_API_BODY_BYTES", 1024 * 1024, help="largest JSON API request body")
    chunk_size: int = env("CDP_GATEWAY_CHUNK_SIZE", 100, help="events per JetStream message")
    key_cache_seconds: float = env("CDP_GATEWAY_KEY_CACHE_SECONDS", 30.0, help="how long a key lookup is cached")
    customer360_timeout_seconds: float = env(
        "CDP_GATEWAY_CUSTOMER360_TIMEOUT_SECONDS",
        2.0,
        help="deadline of each Customer 360 part when the caller sets none",
    )
    write_key_rate: int = env(
        "CDP_GATEWAY_WRITE_KEY_RATE", 20_000, help="default events/s of a write key, whole fleet (0: unlimited)"
    )
    secret_key_rate: int = env(
        "CDP_GATEWAY_SECRET_KEY_RATE", 200, help="default requests/s of a secret key, whole fleet (0: unlimited)"
    )
    rate_burst_seconds: float = env(
        "CDP_GATEWAY_RATE_BURST_SECONDS", 2.0, help="token-bucket size, in seconds of a key's rate"
    )
    replicas: int = env(
        "CDP_GATEWAY_REPLICAS", 1, help="gateway replicas sharing each key's rate (each enforces rate / replicas)"
    )
    dedup_seconds: float = env("CDP_GATEWAY_DEDUP_SECONDS", 600.0, help="how long a messageId is remembered")
    dedup_max_entries: int = env(
        "CDP_GATEWAY_DEDUP_MAX_ENTRIES", 250_000, help="messageIds remembered per replica (0: no gateway de-dup)"
    )
    uvloop: bool = env("CDP_GATEWAY_UVLOOP", True, help="run on uvloop when installed (read before the loop starts)")
