"""Durable JetStream consumers: announcements in (proto -> domain), the live path applies them.

| durable           | stream   | subject                          | payload           |
|-------------------|----------|----------------------------------|-------------------|
| segment-profile   | PROFILE  | {prefix}.profile.{partition}     | ProfileChanged    |
| segment-objects   | PROFILE  | {prefix}.profile.objects         | ObjectTagsChanged |
| segment-identity  | IDENTITY | {prefix}.identity.*              | PersonsMerged, PersonSplit (others skipped) |

Each fetched batch is applied in one transaction and acked after commit. An undecodable or
meaningless message (no workspace, a person id that is not a UUID) is dead-lettered at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC
from decimal import Decimal
from typing import Any, TypeVar

import structlog
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from nats.aio.msg import Msg

from cdp.events.v1 import events_pb2
from cdp_segment.domain import ObjectTags, PersonsMerged, PersonSplit, ProfileChange, ProfileState
from cdp_segment.live import LiveService
from cdp_segment.rules.data import EventFact, ItemFact, OrderFact
from cdpkit.bus import IDENTITY, PROFILE, BusNames
from cdpkit.consumer import ConsumerSpec, PermanentError
from cdpkit.names import UUID, WORKSPACE_ID

log = structlog.get_logger(__name__)

OBJECT_KINDS = ("product", "store", "staff")
# Struct numbers are doubles: integers beyond this are not exact any more.
_EXACT = 2**53
M = TypeVar("M", bound=Message)


def profile_consumer(batch_size: int) -> ConsumerSpec:
    return ConsumerSpec(durable="segment-profile", stream=PROFILE, batch_size=batch_size)


def objects_consumer(names: BusNames, batch_size: int) -> ConsumerSpec:
    return ConsumerSpec(
        durable="segment-objects",
        stream=PROFILE,
        filter_subject=names.subject(PROFILE, "objects"),
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


def plain(value: Any) -> Any:
    """A JSON value from a Struct: whole doubles become ints, others exact Decimals (as the
    projection reads numbers back from jsonb)."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < _EXACT:
            return int(value)
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _struct(message: Message, field: str) -> dict[str, Any]:
    return plain(json_format.MessageToDict(getattr(message, field))) if message.HasField(field) else {}


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
    snapshot = None
    if m.HasField("snapshot"):
        s = m.snapshot
        snapshot = ProfileState(
            traits=_struct(s, "traits"),
            pii_traits=frozenset(s.pii_traits),
            computed=_struct(s, "computed"),
            lifecycle_stage=s.lifecycle_stage or None,
            tier=s.tier or None,
            tags=frozenset(s.tags),
            consent=dict(s.consent),
            points_balance=s.points_balance,
        )
    events = []
    for e in m.events:
        if not e.message_id:
            log.warning("event fact without a message id ignored", person=m.person_id, event_name=e.event)
            continue
        events.append(EventFact(e.event, e.event_time.ToDatetime(UTC), _struct(e, "properties"), e.message_id))
    orders = tuple(
        OrderFact(
            o.order_id,
            o.order_time.ToDatetime(UTC),
            o.total_minor,
            _status(o.status),
            o.store_id,
            o.staff_id,
            tuple(ItemFact(i.sku, i.category, i.product_id) for i in o.items),
        )
        for o in m.orders
        if o.order_id
    )
    return ProfileChange(
        workspace_id=m.workspace_id,
        person_id=m.person_id,
        version=m.version,
        changed_fields=frozenset(m.changed_fields),
        trigger_message_id=m.trigger_message_id,
        snapshot=snapshot,
        values=_struct(m, "values"),
        events=tuple(events),
        orders=orders,
        merged_person_ids=tuple(m.moved.merged_person_ids),
        split_from_person_id=m.moved.split_from_person_id,
        moved_message_ids=tuple(m.moved.message_ids),
        moved_order_ids=tuple(m.moved.order_ids),
    )


def decode_object_tags(data: bytes) -> ObjectTags:
    m = _decode(events_pb2.ObjectTagsChanged, data)
    _check(m.workspace_id)
    if m.object_kind not in OBJECT_KINDS or not m.object_id:
        raise PermanentError(f"invalid object {m.object_kind!r}/{m.object_id!r}")
    return ObjectTags(m.workspace_id, m.object_kind, m.object_id, frozenset(m.tags), m.version)


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
        decoded = [d for d in (self._decode(m.subject, m.data) for m in messages) if d is not None]
        if decoded:
            await self._apply(decoded)


def handlers(live: LiveService) -> dict[str, Handler]:
    return {
        "profile": Handler(lambda _, data: decode_profile_changed(data), live.apply_profile_changes),
        "objects": Handler(lambda _, data: decode_object_tags(data), live.apply_object_tags),
        "identity": Handler(decode_identity, live.apply_identity),
    }
