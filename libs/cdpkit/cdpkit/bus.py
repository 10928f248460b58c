"""NATS JetStream: connection, the catalogue of streams and subjects, partitioning.

Every subject and stream name is derived from one prefix (``CDP_BUS_PREFIX``, default ``cdp``)
so that several environments, or the tests, can share one NATS server without meeting.

Subjects (``p`` = partition, 0..CDP_PARTITIONS-1):

=========================  ==============  =====================================  ==========
subject                    stream          payload (cdp.events.v1)                producer
=========================  ==============  =====================================  ==========
{prefix}.raw.{p}           {PREFIX}_RAW      RawEventBatch                        gateway
{prefix}.resolved.{p}      {PREFIX}_RESOLVED ResolvedEventBatch                   identity
{prefix}.identity.{kind}   {PREFIX}_IDENTITY PersonCreated, ...                   identity
{prefix}.profile.{p}       {PREFIX}_PROFILE  ProfileChanged                       profile
{prefix}.segment.{p}       {PREFIX}_SEGMENT  membership changes                   segment
{prefix}.campaign.{kind}   {PREFIX}_CAMPAIGN messages sent                        campaign
{prefix}.dlq.{consumer}    {PREFIX}_DLQ      the original payload, reason headers consumer loop
=========================  ==============  =====================================  ==========
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import nats
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

log = structlog.get_logger(__name__)

DAY = 24 * 3600


@dataclass(frozen=True)
class StreamSpec:
    """A stream in the catalogue: its suffix, the subject tokens it holds, and its limits."""

    suffix: str
    subject_token: str
    max_age_seconds: float = 7 * DAY
    duplicate_window_seconds: float = 10 * 60
    max_msg_size: int = 8 * 1024 * 1024
    # Subjects are {prefix}.{token}.{partition}: consumers take one durable per partition and
    # share the partitions out among replicas (cdpkit.partitions).
    partitioned: bool = False


RAW = StreamSpec("RAW", "raw", partitioned=True)
RESOLVED = StreamSpec("RESOLVED", "resolved", partitioned=True)
IDENTITY = StreamSpec("IDENTITY", "identity", max_age_seconds=30 * DAY)
PROFILE = StreamSpec("PROFILE", "profile", partitioned=True)
SEGMENT = StreamSpec("SEGMENT", "segment", max_age_seconds=30 * DAY)
CAMPAIGN = StreamSpec("CAMPAIGN", "campaign", max_age_seconds=30 * DAY)
DLQ = StreamSpec("DLQ", "dlq", max_age_seconds=30 * DAY)

CATALOG = (RAW, RESOLVED, IDENTITY, PROFILE, SEGMENT, CAMPAIGN, DLQ)


def partition_of(key: str, partitions: int) -> int:
    """Stable partition of a key (a person id, or an anonymous/user id before resolution)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


@dataclass(frozen=True)
class BusNames:
    """Names of streams and subjects under one prefix."""

    prefix: str = "cdp"
    partitions: int = 4
    # JetStream replicas of every stream (and lease bucket): 3 on a 3-node NATS cluster.
    replicas: int = 1
    _upper: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_upper", self.prefix.upper().replace("-", "_"))

    @property
    def stream_prefix(self) -> str:
        """The upper-case prefix of stream (and KV bucket) names."""
        return self._upper

    def stream(self, spec: StreamSpec) -> str:
        return f"{self._upper}_{spec.suffix}"

    def subject(self, spec: StreamSpec, *tokens: object) -> str:
        return ".".join([self.prefix, spec.subject_token, *map(str, tokens)])

    def all_subjects(self, spec: StreamSpec) -> str:
        return f"{self.prefix}.{spec.subject_token}.>"

    def partitioned(self, spec: StreamSpec, key: str) -> str:
        return self.subject(spec, partition_of(key, self.partitions))

    def dlq_subject(self, consumer: str) -> str:
        return self.subject(DLQ, consumer)

    def stream_config(self, spec: StreamSpec) -> StreamConfig:
        return StreamConfig(
            name=self.stream(spec),
            subjects=[self.all_subjects(spec)],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=spec.max_age_seconds,
            duplicate_window=spec.duplicate_window_seconds,
            max_msg_size=spec.max_msg_size,
            num_replicas=self.replicas,
            # Atomic batches (nats-server 2.12+; older servers ignore the field): the outbox relay
            # publishes a window all or nothing (cdpkit.outbox).
            allow_atomic=True,
        )


async def connect(url: str, *, name: str) -> NATS:
    """A NATS connection that reconnects forever and logs state changes."""

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", error=str(exc))

    async def on_disconnected() -> None:
        log.warning("nats disconnected")

    async def on_reconnected() -> None:
        log.info("nats reconnected")

    return await nats.connect(
        servers=[s.strip() for s in url.split(",") if s.strip()],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
        drain_timeout=5,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
    )


def connection_of(js: JetStreamContext) -> NATS:
    """The core connection under a JetStream context: the outbox relay and the consumer loop
    publish and subscribe on it directly (nats-py keeps it private)."""
    return js._nc


async def ensure_streams(js: JetStreamContext, names: BusNames, specs: tuple[StreamSpec, ...] = CATALOG) -> None:
    """Create the streams, or bring their config up to date; safe to call from every process."""
    for spec in specs:
        config = names.stream_config(spec)
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != 10058:  # stream name already in use with a different configuration
                raise
            await js.update_stream(config)
