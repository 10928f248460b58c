"""Durable JetStream consumers: announcements in (proto -> domain), the live path applies them.

| durable           | stream   | subject                          | payload           |
|-------------------|----------|----------------------------------|-------------------|
| segment-profile   | PROFILE  | {prefix}.profile.{partition}     | ProfileChanged    |
| segment-objects   | PROFILE  | {prefix}.profile.objects         | ObjectTagsChanged |
| segment-settings  | PROFILE  | {prefix}.profile.settings        | WorkspaceSettingsChanged |
| segment-identity  | IDENTITY | {prefix}.identity.*              | PersonsMerged, PersonSplit (others skipped) |

Each fetched batch is applied in one transaction and acked after commit. An undecodable or
meaningless message (no workspace, a person id that is not a UUID) is dead-lettered at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.message import DecodeError, Message
from nats.aio.msg import Msg
from prometheus_client import Counter

from cdp.events.v1 import events_pb2
from cdp_segment.domain import ObjectTags, PersonsMerged, PersonSplit, ProfileChange, ProfileState, WorkspaceZone
from cdp_segment.live import LiveService
from cdp_segment.rules.data import DEFAULT_CURRENCY, EventFact, ItemFact, OrderFact
from cdp_segment.rules.memory import END_OF_TIME
from cdpkit.bus import IDENTITY, PROFILE, BusNames
from cdpkit.consumer import ConsumerSpec, PermanentError
from cdpkit.names import UUID, WORKSPACE_ID

log = structlog.get_logger(__name__)

ADJUSTED = Counter(
    "cdp_segment_values_adjusted_total",
    "Announced values adjusted to be stored (nul, not_a_number, time_out_of_range, bad_value)",
    ["reason"],
)

OBJECT_KINDS = ("product", "store", "staff")
# Struct numbers are doubles: integers beyond this are not exact any more.
_EXACT = 2**53
M = TypeVar("M", bound=Message)


def profile_consumer(batch_size: int, *, linger_seconds: float = 0.0, coalesce: bool = True) -> ConsumerSpec:
    return ConsumerSpec(
        durable="segment-profile",
        stream=PROFILE,
        batch_size=batch_size,
        linger_seconds=linger_seconds,
        coalesce=coalesce,
    )


def objects_consumer(names: BusNames, batch_size: int) -> ConsumerSpec:
    return ConsumerSpec(
        durable="segment-objects",
        stream=PROFILE,
        filter_subject=names.subject(PROFILE, "objects"),
        batch_size=batch_size,
    )


def settings_consumer(names: BusNames, batch_size: int) -> ConsumerSpec:
    return ConsumerSpec(
        durable="segment-settings",
        stream=PROFILE,
        filter_subject=names.subject(PROFILE, "settings"),
        batch_size=batch_size,
    )


def identity_consumer(names: BusNames, batch_size: int) -> ConsumerSpec:
    # One consumer for merges and splits: an unmerge must come after the merge it undoes.
    return ConsumerSpec(
        durable="segment-identity",
        stream=IDENTITY,
        filter_subject=names.subject(IDENTITY, "*"),
        batch_size=batch_size,
    )


class Cleaner:
    """Makes one announcement's values storable and comparable, never failing on one value: a NUL
    (PostgreSQL text and jsonb cannot hold it) becomes U+FFFD, a NaN or infinite number becomes
    null, a fact whose time is out of range is skipped; each counted by reason
    (``cdp_segment_values_adjusted_total``) and logged once per announcement."""

    def __init__(self) -> None:
        self.adjusted: dict[str, int] = {}

    def note(self, reason: str) -> None:
        self.adjusted[reason] = self.adjusted.get(reason, 0) + 1
        ADJUSTED.labels(reason).inc()

    def text(self, value: str) -> str:
        if "\x00" in value:
            self.note("nul")
            return value.replace("\x00", "\ufffd")
        return value

    def texts(self, values) -> frozenset[str]:
        return frozenset(self.text(v) for v in values)

    def value(self, value: struct_pb2.Value) -> Any:
        """A JSON value from a Struct value: whole doubles become ints, others exact Decimals (as
        the projection reads numbers back from jsonb)."""
        kind = value.WhichOneof("kind")
        if kind == "number_value":
            number = value.number_value
            if not math.isfinite(number):
                self.note("not_a_number")
                return None
            return int(number) if number.is_integer() and abs(number) < _EXACT else Decimal(repr(number))
        if kind == "string_value":
            return self.text(value.string_value)
        if kind == "bool_value":
            return value.bool_value
        if kind == "struct_value":
            return self.struct(value.struct_value)
        if kind == "list_value":
            return [self.value(v) for v in value.list_value.values]
        return None

    def struct(self, struct: struct_pb2.Struct) -> dict[str, Any]:
        return {self.text(k): self.value(v) for k, v in struct.fields.items()}

    def time(self, stamp: timestamp_pb2.Timestamp) -> datetime | None:
        try:
            moment = stamp.ToDatetime(UTC)
        except (ValueError, OverflowError):
            moment = None
        if moment is None or not START_OF_TIME < moment < END_OF_TIME:
            self.note("time_out_of_range")
            return None
        return moment


def _struct(cleaner: Cleaner, message: Message, field: str) -> dict[str, Any]:
    return cleaner.struct(getattr(message, field)) if message.HasField(field) else {}


# asyncpg stores datetime.min as -infinity: a fact at that instant could not be read back.
START_OF_TIME = datetime.min.replace(tzinfo=UTC)
# Changed-field values that must have a type: anything else is taken as "unset".
_INT64 = 2**63


def _values(cleaner: Cleaner, values: dict[str, Any]) -> dict[str, Any]:
    checked = dict(values)
    for name, value in values.items():
        if name == "points_balance":
            ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and abs(value) < _INT64)
        elif name in ("lifecycle_stage", "tier"):
            ok = value is None or isinstance(value, str)
        elif name == "tags":
            ok = value is None or (isinstance(value, list) and all(isinstance(t, str) for t in value))
        else:
            continue
        if not ok:
            cleaner.note("bad_value")
            checked[name] = None
    return checked


def _decode(kind: type[M], data: bytes) -> M:
    try:
        return kind.FromString(data)
    except DecodeError as exc:
        raise PermanentError(f"not a {kind.__name__}: {exc}") from None


def _check(workspace_id: str, *person_ids: str) -> None:
    if not WORKSPACE_ID.match(workspace_id):
        raise PermanentError(f"invalid workspace id {workspace_id!r}")
    for person_id in person_ids:
        if not UUID.match(person_id):
            raise PermanentError(f"invalid person id {person_id!r}")


def _status(status: str) -> str:
    # A partially refunded order stays completed (its total is net of refunds).
    return "completed" if status in ("completed", "partially_refunded") else status


def decode_profile_changed(data: bytes) -> ProfileChange:
    m = _decode(events_pb2.ProfileChanged, data)
    _check(m.workspace_id, m.person_id, *m.moved.merged_person_ids)
    if m.moved.split_from_person_id:
        _check(m.workspace_id, m.moved.split_from_person_id)
    clean = Cleaner()
    snapshot = None
    if m.HasField("snapshot"):
        s = m.snapshot
        snapshot = ProfileState(
            traits=_struct(clean, s, "traits"),
            pii_traits=clean.texts(s.pii_traits),
            computed=_struct(clean, s, "computed"),
            lifecycle_stage=clean.text(s.lifecycle_stage) or None,
            tier=clean.text(s.tier) or None,
            tags=clean.texts(s.tags),
            consent={clean.text(k): v for k, v in s.consent.items()},
            points_balance=s.points_balance,
            currency=clean.text(s.currency).upper() or DEFAULT_CURRENCY,
        )
    events = []
    for e in m.events:
        when = clean.time(e.event_time)
        if not e.message_id or when is None:
            log.warning("event fact without a message id or time ignored", person=m.person_id, event_name=e.event)
            continue
        events.append(EventFact(clean.text(e.event), when, _struct(clean, e, "properties"), clean.text(e.message_id)))
    orders = []
    for o in m.orders:
        when = clean.time(o.order_time)
        if not o.order_id or when is None:
            log.warning("order fact without an id or time ignored", person=m.person_id, order_id=o.order_id)
            continue
        items = tuple(ItemFact(clean.text(i.sku), clean.text(i.category), clean.text(i.product_id)) for i in o.items)
        orders.append(
            OrderFact(
                clean.text(o.order_id),
                when,
                o.total_minor,
                _status(clean.text(o.status)),
                clean.text(o.store_id),
                clean.text(o.staff_id),
                items,
                clean.text(o.currency).upper(),
            )
        )
    change = ProfileChange(
        workspace_id=m.workspace_id,
        person_id=m.person_id,
        version=m.version,
        changed_fields=clean.texts(m.changed_fields),
        trigger_message_id=clean.text(m.trigger_message_id),
        snapshot=snapshot,
        values=_values(clean, _struct(clean, m, "values")),
        events=tuple(events),
        orders=tuple(orders),
        merged_person_ids=tuple(m.moved.merged_person_ids),
        split_from_person_id=m.moved.split_from_person_id,
        moved_message_ids=tuple(clean.text(i) for i in m.moved.message_ids),
        moved_order_ids=tuple(clean.text(i) for i in m.moved.order_ids),
    )
    if clean.adjusted:
        log.warning("values adjusted to be stored", person=m.person_id, version=m.version, adjusted=clean.adjusted)
    return change


def decode_object_tags(data: bytes) -> ObjectTags:
    m = _decode(events_pb2.ObjectTagsChanged, data)
    _check(m.workspace_id)
    if m.object_kind not in OBJECT_KINDS or not m.object_id:
        raise PermanentError(f"invalid object {m.object_kind!r}/{m.object_id!r}")
    clean = Cleaner()
    return ObjectTags(m.workspace_id, m.object_kind, clean.text(m.object_id), clean.texts(m.tags), m.version)


def decode_workspace_settings(data: bytes) -> WorkspaceZone:
    m = _decode(events_pb2.WorkspaceSettingsChanged, data)
    _check(m.workspace_id)
    try:
        ZoneInfo(m.time_zone)
    except (ValueError, ZoneInfoNotFoundError):
        raise PermanentError(f"unknown time zone {m.time_zone!r}") from None
    return WorkspaceZone(m.workspace_id, m.time_zone, m.version)


def decode_persons_merged(data: bytes) -> PersonsMerged:
    m = _decode(events_pb2.PersonsMerged, data)
    _check(m.workspace_id, m.survivor_person_id, *m.merged_person_ids)
    return PersonsMerged(m.workspace_id, m.survivor_person_id, tuple(m.merged_person_ids), m.trigger_message_id)


def decode_person_split(data: bytes) -> PersonSplit:
    m = _decode(events_pb2.PersonSplit, data)
    _check(m.workspace_id, m.person_id, m.new_person_id, *m.moved_person_ids)
    return PersonSplit(m.workspace_id, m.person_id, m.new_person_id, tuple(m.moved_person_ids))


# Identity's announcements segment applies, by subject kind; the others are not its concern.
IDENTITY_KINDS: dict[str, Callable[[bytes], PersonsMerged | PersonSplit]] = {
    "persons_merged": decode_persons_merged,
    "person_split": decode_person_split,
}


def decode_identity(subject: str, data: bytes) -> PersonsMerged | PersonSplit | None:
    decode = IDENTITY_KINDS.get(subject.rsplit(".", 1)[-1])
    return decode(data) if decode else None


class Handler:
    """Decode a batch, then hand it to one use case (one transaction). ``decode(subject, data)``
    returns None for a message the use case skips."""

    def __init__(self, decode: Callable[[str, bytes], Any], apply: Callable[[list[Any]], Any]) -> None:
        self._decode = decode
        self._apply = apply

    async def __call__(self, messages: Sequence[Msg]) -> None:
        decoded = [d for d in (self._decoded(m) for m in messages) if d is not None]
        if decoded:
            await self._apply(decoded)

    def _decoded(self, message: Msg) -> Any:
        # A message that cannot be decoded can never be applied: permanent for that message (the
        # consumer loop retries the batch one by one and dead-letters only this one).
        try:
            return self._decode(message.subject, message.data)
        except PermanentError:
            raise
        except Exception as exc:
            raise PermanentError(f"undecodable {message.subject}: {type(exc).__name__}: {exc}") from exc


def handlers(live: LiveService) -> dict[str, Handler]:
    return {
        "profile": Handler(lambda _, data: decode_profile_changed(data), live.apply_profile_changes),
        "objects": Handler(lambda _, data: decode_object_tags(data), live.apply_object_tags),
        "settings": Handler(lambda _, data: decode_workspace_settings(data), live.apply_time_zones),
        "identity": Handler(decode_identity, live.apply_identity),
    }
