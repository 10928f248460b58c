"""Events as identity hands them to the profile, for tests that call the service directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cdp.events.v1 import events_pb2
from cdp_profile.consumers import to_incoming

T0 = datetime(2026, 6, 18, 4, 0, tzinfo=UTC)
WS = "shop"


def raw_event(message_id, minutes, name="Product Viewed", type_=events_pb2.EVENT_TYPE_TRACK, traits=None,
              **properties):  # fmt: skip
    raw = events_pb2.RawEvent(message_id=message_id, workspace_id=WS, type=type_, event=name)
    raw.timestamp.FromDatetime(T0 + timedelta(minutes=minutes))
    raw.received_at.FromDatetime(T0 + timedelta(minutes=minutes, seconds=1))
    if traits:
        raw.traits.update(traits)
    if properties:
        raw.properties.update(properties)
    return raw


def resolved(person, message_id, minutes, name="Product Viewed", type_=events_pb2.EVENT_TYPE_TRACK, traits=None,
             identifiers=(), **properties):  # fmt: skip
    event = events_pb2.ResolvedEvent(event=raw_event(message_id, minutes, name, type_, traits, **properties))
    event.person_id = person
    event.identifiers.extend(events_pb2.Identifier(type=t, value=v) for t, v in identifiers)
    return event


def incoming(person, message_id, minutes, name="Product Viewed", **kwargs):
    """An event as the resolved-events consumer hands it to the service."""
    return to_incoming(resolved(person, message_id, minutes, name, **kwargs))
