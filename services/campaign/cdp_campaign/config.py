from __future__ import annotations

from dataclasses import dataclass

from cdpkit.config import CommonSettings, Secret, env

SCHEMA = "campaign"
PROVIDER_KINDS = ("sink", "smtp", "webhook", "none")


@dataclass(frozen=True, kw_only=True)
class Settings(CommonSettings):
    grpc_port: int = env("CDP_CAMPAIGN_GRPC_PORT", 50064, help="gRPC port of the campaign service")
    metrics_port: int = env("CDP_CAMPAIGN_METRICS_PORT", 9464, help="Prometheus /metrics port; 0 picks a free one")
    profile_target: str = env(
        "CDP_CAMPAIGN_PROFILE_TARGET", "127.0.0.1:50062", help="host:port of the profile service (GetProfile, tags)"
    )
    segment_target: str = env(
        "CDP_CAMPAIGN_SEGMENT_TARGET", "127.0.0.1:50063", help="host:port of the segment service (membership)"
    )
    call_timeout_seconds: float = env(
        "CDP_CAMPAIGN_CALL_TIMEOUT_SECONDS", 5.0, help="deadline of each call to profile or segment"
    )
    # Empty provider: the sink when CDP_CAMPAIGN_SINK_PATH is set, else none (messages fail, visibly).
    email_provider: str = env(
        "CDP_CAMPAIGN_EMAIL_PROVIDER", "", help="email: smtp, sink or none (empty: see SINK_PATH)"
    )
    sms_provider: str = env("CDP_CAMPAIGN_SMS_PROVIDER", "", help="sms: webhook, sink or none")
    push_provider: str = env("CDP_CAMPAIGN_PUSH_PROVIDER", "", help="app push: webhook, sink or none")
    wechat_provider: str = env(
        "CDP_CAMPAIGN_WECHAT_PROVIDER", "", help="WeChat template messages: webhook, sink or none"
    )
    sink_path: str = env(
        "CDP_CAMPAIGN_SINK_PATH",
        "",
        help="JSONL file of the dev sink provider; channels without a provider use it when set",
    )
    smtp_host: str = env("CDP_CAMPAIGN_SMTP_HOST", "127.0.0.1", help="SMTP server host")
    smtp_port: int = env("CDP_CAMPAIGN_SMTP_PORT", 587, help="SMTP server port")
    smtp_tls: str = env("CDP_CAMPAIGN_SMTP_TLS", "starttls", help="none, starttls or tls (implicit)")
    smtp_username: str = env("CDP_CAMPAIGN_SMTP_USERNAME", "", help="SMTP user (empty: no authentication)")
    smtp_password: Secret = env("CDP_CAMPAIGN_SMTP_PASSWORD", Secret(""), help="SMTP password")  # noqa: RUF009
    smtp_from: str = env("CDP_CAMPAIGN_SMTP_FROM", "noreply@example.com", help="From: address of e-mails")
    sms_url: str = env("CDP_CAMPAIGN_SMS_URL", "", help="webhook URL of the SMS gateway")
    push_url: str = env("CDP_CAMPAIGN_PUSH_URL", "", help="webhook URL of the app push gateway")
    wechat_url: str = env("CDP_CAMPAIGN_WECHAT_URL", "", help="webhook URL of the WeChat template message gateway")
    webhook_signing_key: Secret = env(  # noqa: RUF009
        "CDP_CAMPAIGN_WEBHOOK_SIGNING_KEY", Secret(""), help="HMAC-SHA256 key signing webhook bodies (empty: unsigned)"
    )
    webhook_allowed_hosts: tuple[str, ...] = env(
        "CDP_CAMPAIGN_WEBHOOK_ALLOWED_HOSTS",
        (),
        help="hosts a journey's webhook step may call (comma-separated; .example.com for subdomains); "
        "empty: any host with only public addresses (no loopback, private, link-local, metadata)",
    )
    send_timeout_seconds: float = env("CDP_CAMPAIGN_SEND_TIMEOUT_SECONDS", 10.0, help="deadline of one provider call")
    send_batch: int = env("CDP_CAMPAIGN_SEND_BATCH", 50, help="deliveries claimed and sent together")
    claim_seconds: float = env(
        "CDP_CAMPAIGN_CLAIM_SECONDS",
        30.0,
        help="how long the sender's or the scheduler's claim on a row holds; work whose process died "
        "mid-way is taken over after this (longer than CALL_TIMEOUT + SEND_TIMEOUT)",
    )
    max_attempts: int = env("CDP_CAMPAIGN_MAX_ATTEMPTS", 6, help="provider attempts before a delivery is dead-lettered")
    retry_backoff_seconds: tuple[float, ...] = env(
        "CDP_CAMPAIGN_RETRY_BACKOFF_SECONDS", (5.0, 30.0, 120.0, 600.0, 1800.0), help="waits between attempts"
    )
    scheduler_batch: int = env("CDP_CAMPAIGN_SCHEDULER_BATCH", 100, help="due instances advanced per transaction")
    poll_seconds: float = env(
        "CDP_CAMPAIGN_POLL_SECONDS",
        1.0,
        help="how often the scheduler and sender look for due work (also woken at once)",
    )
    consumer_batch: int = env("CDP_CAMPAIGN_CONSUMER_BATCH", 50, help="trigger messages fetched per batch")
    journey_cache_seconds: float = env(
        "CDP_CAMPAIGN_JOURNEY_CACHE_SECONDS", 2.0, help="how long the consumers cache the active journeys"
    )
    definition_cache_size: int = env(
        "CDP_CAMPAIGN_DEFINITION_CACHE_SIZE",
        1000,
        help="parsed journey versions kept in memory (least recently used evicted; read again from the database)",
    )
    time_zone_cache_seconds: float = env(
        "CDP_CAMPAIGN_TIME_ZONE_CACHE_SECONDS",
        60.0,
        help="how long the workspace time zone read from profile (ProfileSettings.time_zone) is cached",
    )
    cross_sell_cache_seconds: float = env(
        "CDP_CAMPAIGN_CROSS_SELL_CACHE_SECONDS",
        3600.0,
        help="how long product companions mined by segment (ListProductCompanions) are cached per sku",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for channel in ("email", "sms", "push", "wechat"):
            kind = self.provider_of(channel)
            allowed = ("smtp", "sink", "none") if channel == "email" else ("webhook", "sink", "none")
            if kind not in allowed:
                raise ValueError(f"CDP_CAMPAIGN_{channel.upper()}_PROVIDER must be one of {', '.join(allowed)}")
            if kind == "sink" and not self.sink_path:
                raise ValueError(f"CDP_CAMPAIGN_SINK_PATH is required when {channel} uses the sink provider")
            if kind == "webhook" and not getattr(self, f"{channel}_url").startswith(("http://", "https://")):
                raise ValueError(f"CDP_CAMPAIGN_{channel.upper()}_URL must be an http(s) URL for the webhook provider")
        if self.smtp_tls not in ("none", "starttls", "tls"):
            raise ValueError("CDP_CAMPAIGN_SMTP_TLS must be none, starttls or tls")
        if not 1 <= self.send_batch <= 1000 or not 1 <= self.scheduler_batch <= 1000:
            raise ValueError("CDP_CAMPAIGN_SEND_BATCH and CDP_CAMPAIGN_SCHEDULER_BATCH must be 1 to 1000")
        if self.claim_seconds <= self.send_timeout_seconds + 2 * self.call_timeout_seconds:
            raise ValueError(
                "CDP_CAMPAIGN_CLAIM_SECONDS must exceed CDP_CAMPAIGN_SEND_TIMEOUT_SECONDS + 2 x CALL_TIMEOUT_SECONDS"
            )
        if self.max_attempts < 1 or not self.retry_backoff_seconds:
            raise ValueError("CDP_CAMPAIGN_MAX_ATTEMPTS must be >= 1 and the backoff non-empty")

    def provider_of(self, channel: str) -> str:
        return getattr(self, f"{channel}_provider") or ("sink" if self.sink_path else "none")
