"""Typed settings from environment variables.

Each component declares one frozen dataclass (its ``config.py``) whose fields carry the
environment variable name, and loads it once at start-up with :func:`load`. Every problem is
reported at once and the process refuses to start: no half-configured service.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")

_MISSING = dataclasses.MISSING


class ConfigError(Exception):
    """The environment does not describe a runnable configuration."""


class Secret:
    """A string that never shows itself in reprs, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def env(name: str, default: Any = _MISSING, *, help: str = "") -> Any:
    """Declare a settings field read from environment variable ``name``.

    Without a default the variable is required.
    """
    metadata = {"env": name, "help": help}
    if default is _MISSING:
        return dataclasses.field(metadata=metadata)
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple for sequence defaults")
    return dataclasses.field(default=default, metadata=metadata)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(raw: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if raw == "":
            return None
        return _parse(raw, options[0])
    if origin is tuple:
        (item,) = {a for a in typing.get_args(kind) if a is not Ellipsis}
        return tuple(_parse(part.strip(), item) for part in raw.split(",") if part.strip())
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")
    if kind is int:
        return int(raw.strip())
    if kind is float:
        return float(raw.strip())
    if kind is Path:
        return Path(raw)
    if kind is Secret:
        return Secret(raw)
    if kind is str:
        return raw
    raise TypeError(f"unsupported settings type {kind!r}")


def load(cls: type[T], environ: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from the environment, raising :class:`ConfigError` listing every problem."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    problems: list[str] = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = field.metadata.get("env")
        if name is None:
            continue
        raw = environ.get(name)
        if raw is None:
            if field.default is _MISSING and field.default_factory is _MISSING:
                problems.append(f"{name} is required ({field.metadata.get('help') or field.name})")
            continue
        try:
            values[field.name] = _parse(raw, hints[field.name])
        except (ValueError, TypeError) as exc:
            problems.append(f"{name}={raw!r} is not a valid {hints[field.name]}: {exc}")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    try:
        settings = cls(**values)
    except ValueError as exc:  # __post_init__ checks
        raise ConfigError(f"invalid configuration: {exc}") from None
    return settings


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(variable, default, help) rows for documentation and ``--help`` output."""
    rows = []
    for field in dataclasses.fields(cls):
        name = field.metadata.get("env")
        if name is None:
            continue
        default = "(required)" if field.default is _MISSING else repr(field.default)
        rows.append((name, default, field.metadata.get("help", "")))
    return rows


@dataclasses.dataclass(frozen=True, kw_only=True)
class CommonSettings:
    """Settings every service process shares. Services subclass this in their ``config.py``."""

    database_url: Secret = env(  # noqa: RUF009 - env() returns a dataclasses.field
        "CDP_DATABASE_URL", help="PostgreSQL DSN, e.g. postgresql://cdp@127.0.0.1:5432/cdp"
    )
    nats_url: str = env("CDP_NATS_URL", "nats://127.0.0.1:4222", help="NATS server URL(s), comma-separated")
    grpc_host: str = env("CDP_GRPC_HOST", "127.0.0.1", help="gRPC bind address (0.0.0.0 in containers)")
    bus_prefix: str = env(
        "CDP_BUS_PREFIX", "cdp", help="namespace of every NATS subject and stream (one per environment)"
    )
    partitions: int = env("CDP_PARTITIONS", 4, help="number of partitions of the event subjects")
    stream_replicas: int = env(
        "CDP_STREAM_REPLICAS", 1, help="JetStream replicas of each stream: 1 on one server, 3 on a NATS cluster"
    )
    log_level: str = env("CDP_LOG_LEVEL", "info", help="debug, info, warning or error")
    log_format: str = env("CDP_LOG_FORMAT", "auto", help="json, console, or auto (json unless on a TTY)")
    metrics_host: str = env("CDP_METRICS_HOST", "127.0.0.1", help="bind address of the Prometheus /metrics endpoint")
    shutdown_grace_seconds: float = env(
        "CDP_SHUTDOWN_GRACE_SECONDS", 10.0, help="time in-flight RPCs get to finish on SIGTERM"
    )
    db_pool_max_size: int = env("CDP_DB_POOL_MAX_SIZE", 10, help="maximum connections in the asyncpg pool")
    consumer_ack_wait_seconds: float = env(
        "CDP_CONSUMER_ACK_WAIT_SECONDS",
        30.0,
        help="time before JetStream redelivers an unacked message (crash recovery)",
    )
    consumer_max_deliver: int = env(
        "CDP_CONSUMER_MAX_DELIVER", 5, help="deliveries of a failing message before it goes to the dead-letter subject"
    )
    consumer_lease_seconds: float = env(
        "CDP_CONSUMER_LEASE_SECONDS",
        10.0,
        help="lease on a partition (NATS KV); a replica that stops renewing loses its partitions after this",
    )
    migrate_on_start: bool = env(
        "CDP_MIGRATE_ON_START", True, help="apply pending migrations before serving (false when a Job migrates)"
    )
    clock_offset_file: str = env(
        "CDP_CLOCK_OFFSET_FILE",
        "",
        help="tests only: a file holding seconds to add to the system time (timers, windows); empty in production",
    )

    def clock(self):  # -> cdpkit.clock.Clock
        from cdpkit.clock import clock_from_settings

        return clock_from_settings(self.clock_offset_file)

    def __post_init__(self) -> None:
        if not self.database_url.get().startswith(("postgres://", "postgresql://")):
            raise ValueError("CDP_DATABASE_URL must be a postgresql:// URL")
        if self.log_format not in ("json", "console", "auto"):
            raise ValueError("CDP_LOG_FORMAT must be json, console or auto")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError("CDP_LOG_LEVEL must be debug, info, warning or error")
        if not 1.0 <= self.consumer_lease_seconds <= 300.0:
            raise ValueError("CDP_CONSUMER_LEASE_SECONDS must be between 1 and 300")
        if self.stream_replicas not in (1, 3, 5):
            raise ValueError("CDP_STREAM_REPLICAS must be 1, 3 or 5")
        if not 1 <= self.partitions <= 1024:
            raise ValueError("CDP_PARTITIONS must be between 1 and 1024")
        if not self.bus_prefix.replace("_", "").replace("-", "").isalnum():
            raise ValueError("CDP_BUS_PREFIX may hold only letters, digits, '-' and '_'")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PiiSettings:
    """Mixed into the settings of services that store personal data (see cdpkit.pii)."""

    pii_keys: Secret = env(  # noqa: RUF009
        "CDP_PII_KEYS", help="PII encryption keys, 'kid:base64(32 bytes)', comma-separated; the first seals"
    )
    pii_hash_key: Secret = env(  # noqa: RUF009
        "CDP_PII_HASH_KEY", help="base64 secret (>= 32 bytes) for the keyed hash that looks PII up"
    )

    def pii_vault(self):  # -> cdpkit.pii.PiiVault (imported lazily: config stays dependency-free)
        from cdpkit.pii import PiiVault

        return PiiVault.from_config(self.pii_keys.get(), self.pii_hash_key.get())
