"""Consumers: resolved events (store once, update the profile, announce through the outbox) and
identity's merges and splits."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import nats.errors
import nats.js.errors
import orjson
import structlog
from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from cdp.events.v1 import events_pb2
from cdp_profile.domain import (
    EVENT_KINDS,
    MAX_TRAIT_BYTES,
    MAX_TRAIT_KEY,
    MAX_TRAITS,
    ORDER_KINDS,
    NewEvent,
    clean_text,
    normalise_channel,
    order_problem,
    without_nul,
)
from cdp_profile.metrics import EVENTS_ADJUSTED, EVENTS_REJECTED
from cdp_profile.service import BadAnnouncement, Incoming, ProfileService
from cdp_profile.structs import EVENT_TYPE_NAMES, text_of, to_datetime, to_dict
from cdpkit.bus import IDENTITY, RESOLVED, BusNames
from cdpkit.consumer import ConsumerSpec, PermanentError

log = structlog.get_logger(__name__)


def resolved_events_consumer(batch_size: int) -> ConsumerSpec:
    # Several partitions on one replica: their small batches applied in one transaction.
    return ConsumerSpec(durable="profile-resolved", stream=RESOLVED, batch_size=batch_size, coalesce=True)


class BadEvent(ValueError):
    """A resolved event the profile cannot store (the rest of its batch goes on)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# Bounds of what one event may carry (the gateway's own limits are tighter; these guard the
# profile against any producer): a time at most MAX_FUTURE after its receipt (later: clamped to
# the receipt, a device clock ahead) and at most MAX_AGE before it (older: refused); sizes.
MAX_FUTURE = timedelta(minutes=5)
MAX_AGE = timedelta(days=20 * 366)
RECEIVED_RANGE = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
MAX_ID = 256
MAX_STRUCT_BYTES = 64 * 1024


def _time(message: events_pb2.RawEvent, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    try:
        return to_datetime(getattr(message, field))
    except (OverflowError, ValueError):
        raise BadEvent("bad_time", f"{field} is not a valid time") from None


def _traits(struct: struct_pb2.Struct, adjusted: list[str]) -> dict[str, Any]:
    """Identify traits, each bounded in size; NUL characters (which Postgres cannot store) removed."""
    traits = {}
    for key, value in to_dict(struct).items():
        if len(traits) == MAX_TRAITS or not key or len(key) > MAX_TRAIT_KEY:
            adjusted.append("trait_dropped")
            continue
        if len(orjson.dumps(value)) > MAX_TRAIT_BYTES:
            adjusted.append("trait_dropped")
            continue
        traits[key] = value
    cleaned = without_nul(traits)
    if cleaned != traits:
        adjusted.append("nul_removed")
    return cleaned


def describe(event_type: str, properties: struct_pb2.Struct, context: struct_pb2.Struct) -> tuple[str, str, str, str]:
    """(channel, store id, staff id, source) of an event, where known."""
    # Which of the keys read here each holds, found in one pass (most events hold few or none).
    own, sent = _DESCRIBING.intersection(properties.fields), _DESCRIBING.intersection(context.fields)
    store = _text(properties, own, "store_id", "storeId") or _text(context, sent, "store_id", "storeId")
    staff = _text(properties, own, "staff_id", "staffId") or _text(context, sent, "staff_id", "staffId")
    channel = normalise_channel(_text(properties, own, "channel") or _text(context, sent, "channel"))
    if not channel:
        if store:
            channel = "store"
        elif event_type == "screen" or "app" in sent:
            channel = "app"
        elif event_type == "page" or "page" in sent:
            channel = "web"
    source = _text(context, sent, "source") or channel
    return channel, clean_text(store), clean_text(staff), clean_text(source, 64)


_DESCRIBING = frozenset({"store_id", "storeId", "staff_id", "staffId", "channel", "source", "app", "page"})


def _text(struct: struct_pb2.Struct, present: frozenset[str], *keys: str) -> str:
    """``text_of(struct, *keys)``, given which keys ``struct`` holds."""
    for key in keys:
        if key in present:
            text = text_of(struct, key)
            if text:
                return text
    return ""


def kept_context(context: struct_pb2.Struct) -> struct_pb2.Struct:
    """The part of ``context`` the profile keeps (see docs/profile.md, Events in: context), shared
    and read-only: a storefront sends the same context with every event of a visit, so the part
    kept is looked up by the context's bytes (bounded) instead of picked apart again each time."""
    raw = context.SerializeToString()
    kept = _kept_contexts.get(raw)
    if kept is None:
        kept = _kept_context(context)
        if len(raw) <= KEPT_CONTEXT_BYTES:
            if len(_kept_contexts) >= KEPT_CONTEXT_CACHE:
                _kept_contexts.clear()
            _kept_contexts[raw] = kept
    return kept


# At most ~4,096 x 2 KB of contexts remembered (a typical one is a few hundred bytes).
KEPT_CONTEXT_CACHE = 4096
KEPT_CONTEXT_BYTES = 2048
_kept_contexts: dict[bytes, struct_pb2.Struct] = {}


def _kept_context(context: struct_pb2.Struct) -> struct_pb2.Struct:
    """:func:`kept_context` worked out.

    Personal data identity needed and the profile does not (ip, identify traits, device ids and
    advertising ids, precise location) is not kept: PIPL counts device identifiers and
    whereabouts as personal (precise location as sensitive) information, and nothing here reads
    them. Kept: where the event came from (channel, source, store, staff, app, library, os,
    device type/model, locale, time zone, screen, campaign, page without its query string).
    """
    kept = struct_pb2.Struct()
    fields = context.fields
    for key in KEPT_CONTEXT:
        if key in fields:
            kept.fields[key].CopyFrom(fields[key])
    for key, allowed in PARTIAL_CONTEXT.items():
        if key in fields and fields[key].HasField("struct_value"):
            inner = fields[key].struct_value.fields
            part = kept.fields[key].struct_value
            for name in allowed:
                if name in inner:
                    value = inner[name]
                    if name in ("url", "referrer") and value.HasField("string_value"):
                        part.fields[name].string_value = value.string_value.split("?", 1)[0].split("#", 1)[0]
                    else:
                        part.fields[name].CopyFrom(value)
    return kept


# Bumped when KEPT_CONTEXT or PARTIAL_CONTEXT narrows: stored events are then rewritten in the
# background (cdp_profile.upkeep.EventRewrite). 1: the allowlist of 2026-12.
CONTEXT_RULES_VERSION = 1
KEPT_CONTEXT = (
    "app", "campaign", "channel", "library", "locale", "os", "screen", "source", "timezone", "userAgent",
    "store_id", "storeId", "staff_id", "staffId",
)  # fmt: skip
PARTIAL_CONTEXT = {
    "device": ("type", "manufacturer", "model", "name"),
    "page": ("path", "title", "url", "referrer"),
    "location": ("country", "region", "city"),
    "network": ("carrier", "cellular", "wifi", "bluetooth"),
}


def to_incoming(resolved: events_pb2.ResolvedEvent) -> Incoming:
    """The profile's view of a resolved event, validated and bounded: raises :class:`BadEvent`
    for what cannot be stored; clamps what can be (``Incoming.adjusted`` says what)."""
    event = resolved.event
    if not event.workspace_id:
        raise BadEvent("no_workspace")
    if not resolved.person_id:
        raise BadEvent("no_person_id")
    try:
        person_id = str(uuid.UUID(resolved.person_id))
    except ValueError:
        raise BadEvent("bad_person_id") from None
    if not event.message_id or len(event.message_id) > MAX_ID or "\x00" in event.message_id:
        raise BadEvent("bad_message_id")
    adjusted: list[str] = []
    received = _time(event, "received_at") or datetime.now(UTC)
    if not RECEIVED_RANGE[0] <= received < RECEIVED_RANGE[1]:
        raise BadEvent("bad_time", "received_at is out of range")
    event_time = _time(event, "timestamp") or received
    if event_time > received + MAX_FUTURE:
        event_time = received
        adjusted.append("future_time")
    elif event_time < received - MAX_AGE:
        raise BadEvent("too_old", f"timestamp {event_time.isoformat()} is more than 20 years before its receipt")
    if event.properties.ByteSize() > MAX_STRUCT_BYTES or event.traits.ByteSize() > MAX_STRUCT_BYTES:
        raise BadEvent("too_large", f"properties and traits are limited to {MAX_STRUCT_BYTES} bytes each")
    type_ = EVENT_TYPE_NAMES.get(event.type, "unspecified")
    context = kept_context(event.context)
    channel, store_id, staff_id, source = describe(type_, event.properties, event.context)
    traits = None
    if type_ == "identify" and event.HasField("traits"):
        traits = {"set": _traits(event.traits, adjusted)}
    name = clean_text(event.event)
    if name != event.event:
        adjusted.append("nul_removed")
    item = Incoming(
        workspace_id=clean_text(event.workspace_id, MAX_ID),
        message_id=event.message_id,
        person_id=person_id,
        type=type_,
        event=name,
        properties=event.properties,
        context=context,
        event_time=event_time,
        received_at=received,
        traits=traits,
        identifiers=[(i.type, i.value) for i in resolved.identifiers],
        channel=channel,
        store_id=store_id,
        staff_id=staff_id,
        source=source,
        adjusted=adjusted,
    )
    if EVENT_KINDS.get(item.event) in ORDER_KINDS and type_ == "track":
        item.property_values = to_dict(event.properties)
        problem = order_problem(
            NewEvent(item.message_id, person_id, type_, item.event, event_time, item.property_values)
        )
        if problem:
            raise BadEvent("order_values_out_of_range", problem)
    return item


def admit(resolved_events: Sequence[events_pb2.ResolvedEvent]) -> list[Incoming]:
    """The events of a batch the profile can store; the others are logged and counted, never
    failing the batch (one chunk holds up to 100 events of many shoppers)."""
    items = []
    for resolved in resolved_events:
        try:
            item = to_incoming(resolved)
        except BadEvent as exc:
            EVENTS_REJECTED.labels(exc.reason).inc()
            log.warning(
                "resolved event rejected",
                workspace=resolved.event.workspace_id[:MAX_ID],
                message_id=resolved.event.message_id[:MAX_ID],
                reason=exc.reason,
                detail=exc.detail,
            )
            continue
        for reason in item.adjusted:
            EVENTS_ADJUSTED.labels(reason).inc()
        if item.adjusted:
            log.info(
                "resolved event adjusted",
                workspace=item.workspace_id,
                message_id=item.message_id,
                reasons=sorted(set(item.adjusted)),
            )
        items.append(item)
    return items


class ResolvedEventsHandler:
    def __init__(self, service: ProfileService) -> None:
        self._service = service

    async def __call__(self, messages: Sequence[Msg]) -> None:
        resolved: list[events_pb2.ResolvedEvent] = []
        for message in messages:
            try:
                batch = events_pb2.ResolvedEventBatch.FromString(message.data)
            except DecodeError as exc:
                raise PermanentError(f"not a ResolvedEventBatch: {exc}") from None
            resolved.extend(batch.events)
        await self._service.record_events(admit(resolved))


class _Gap(Exception):
    """A delivery of the follower's consumer went missing: read again from the position."""


# Failures that say nothing about the announcement itself (they do not bring it closer to the
# dead-letter subject): the database unreachable, restarting (57P01-57P03: a session cut by a
# shutdown or failover, "the database system is starting up" while a new connection is opened)
# or out of connections. A statement timeout (57014) still counts: it may be the announcement's.
_UNREACHABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)


def counts_against_announcement(error: BaseException) -> bool:
    """Does this failure to apply an announcement bring it closer to the dead-letter subject?"""
    return not isinstance(error, _UNREACHABLE)


class IdentityFollower:
    """Applies identity's merges and splits one at a time, in the order of the IDENTITY stream.

    A shared durable consumer would let replicas take announcements side by side and a retried
    one fall behind later ones: a split applied before its merge changes nothing, and the merge
    then glues two people for good. So one process at a time (a Postgres session lock; another
    replica takes over when it dies) reads the stream from the position committed with the last
    change (an ephemeral ordered consumer), and each announcement is applied in one transaction
    that moves the position: exactly once, in order. One that fails is tried again before
    anything after it; after ``max_attempts`` (at once when it can never apply) it goes to the
    dead-letter subject ``{prefix}.dlq.profile-identity`` with the reason, and the rest follows.
    """

    name = "profile-identity"
    KINDS = ("persons_merged", "person_split")

    def __init__(
        self,
        service: ProfileService,
        js: JetStreamContext,
        names: BusNames,
        *,
        max_attempts: int = 5,
        batch: int = 100,
        idle_seconds: float = 1.0,
        backoff_seconds: Sequence[float] = (0.5, 2.0, 10.0, 30.0),
    ) -> None:
        self._service = service
        self._js = js
        self._names = names
        self._max_attempts = max_attempts
        self._batch = batch
        self._idle = idle_seconds
        self._backoff = tuple(backoff_seconds)
        self._failures: dict[int, int] = {}
        self._stopping = asyncio.Event()
        # True while this replica holds the lease and follows the stream.
        self.leading = False

    def stop(self) -> None:
        self._stopping.set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def run(self) -> None:
        stream = self._names.stream(IDENTITY)
        while not self._stopping.is_set():
            delay = self._idle
            try:
                async with self._service.identity_lease() as leader:
                    if leader:
                        self.leading = True
                        try:
                            await self._retire_durable(stream)
                            await self._follow(stream)
                        finally:
                            self.leading = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - NATS or Postgres away, or an announcement failed
                attempts = max(self._failures.values(), default=1)
                delay = self._backoff[min(attempts - 1, len(self._backoff) - 1)]
                log.warning("identity follower paused", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
            await self._sleep(delay)

    async def _retire_durable(self, stream: str) -> None:
        """The shared durable this follower replaced: its acknowledged floor becomes the starting
        position (not the whole history again, where an announcement it had dead-lettered would
        now be applied after later ones), then it is replaced by a durable of the same name that
        delivers nothing and that a replica of the old version cannot take back (its ack policy
        cannot be updated): during a rolling deploy, an old replica that restarts cannot recreate
        the shared durable and apply announcements beside the follower, out of order."""
        for _ in range(3):
            try:
                info = await self._js.consumer_info(stream, self.name)
            except nats.js.errors.NotFoundError:
                info = None
            if info is not None:
                if AckPolicy(info.config.ack_policy) == AckPolicy.NONE:  # nats-py gives the text
                    return  # retired already
                if await self._service.identity_position() == 0 and info.ack_floor and info.ack_floor.stream_seq:
                    await self._service.skip_identity(info.ack_floor.stream_seq)
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await self._js.delete_consumer(stream, self.name)
            try:
                await self._js.add_consumer(stream, self._retired_durable())
                return
            except nats.js.errors.BadRequestError:
                continue  # an old replica recreated it in between: hand its position over again
        log.warning("the old shared durable could not be retired", consumer=self.name)

    def _retired_durable(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.name,
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.NONE,
            filter_subject=self._names.subject(IDENTITY, "retired"),  # published by nobody
            description="retired: identity announcements are applied by the profile's IdentityFollower",
        )

    async def _follow(self, stream: str) -> None:
        position = await self._service.identity_position()
        config = ConsumerConfig(
            name=f"profile-identity-{uuid.uuid4().hex[:12]}",
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if position else DeliverPolicy.ALL,
            opt_start_seq=position + 1 if position else None,
            ack_policy=AckPolicy.NONE,
            filter_subjects=[self._names.subject(IDENTITY, kind) for kind in self.KINDS],
            inactive_threshold=60.0,
            mem_storage=True,
        )
        await self._js.add_consumer(stream, config)
        subscription = await self._js.pull_subscribe_bind(durable=None, stream=stream, name=config.name)
        delivered = 0
        try:
            while not self._stopping.is_set():
                try:
                    messages = await subscription.fetch(self._batch, timeout=self._idle)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                for message in messages:
                    # Nothing is redelivered without acks: a message lost in transit (a fetch that
                    # expired as it arrived) shows as a gap in the consumer's sequence, and is
                    # read again from the committed position rather than skipped.
                    if message.metadata.sequence.consumer != delivered + 1:
                        raise _Gap(f"expected delivery {delivered + 1}, got {message.metadata.sequence.consumer}")
                    delivered += 1
                    await self._apply(message)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
            with contextlib.suppress(Exception):
                await self._js.delete_consumer(stream, config.name)

    async def _apply(self, message: Msg) -> None:
        sequence = message.metadata.sequence.stream
        kind = message.subject.rsplit(".", 1)[-1]
        try:
            await self._service.apply_identity(kind, message.data, sequence)
        except BadAnnouncement as exc:
            await self._dead_letter(message, sequence, exc, 1)
        except Exception as exc:
            if not counts_against_announcement(exc):
                raise  # Postgres away: not the announcement's fault, tried again without counting
            attempts = self._failures[sequence] = self._failures.get(sequence, 0) + 1
            if attempts < self._max_attempts:
                raise  # read again from the committed position, after a pause
            await self._dead_letter(message, sequence, exc, attempts)
        self._failures.pop(sequence, None)

    async def _dead_letter(self, message: Msg, sequence: int, error: Exception, attempts: int) -> None:
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:1000]
        await self._js.publish(
            self._names.dlq_subject(self.name),
            message.data,
            headers={
                "Nats-Msg-Id": f"{self._names.stream(IDENTITY)}:{sequence}",
                "Cdp-Dlq-Reason": reason,
                "Cdp-Dlq-Consumer": self.name,
                "Cdp-Dlq-Subject": message.subject,
                "Cdp-Dlq-Deliveries": str(attempts),
                "Cdp-Dlq-Stream-Seq": str(sequence),
            },
        )
        await self._service.skip_identity(sequence)
        log.error("identity announcement dead-lettered", subject=message.subject, sequence=sequence, reason=reason)
