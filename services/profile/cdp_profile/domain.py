"""Profile rules, pure Python: how a batch of new events changes a profile.

Foundation scope: an event counter, first/last seen, and traits from identify calls merged in
event-time order. Typed e-commerce events, computed traits, lifecycle, late-arrival rules for
traits and the rest of the 360° view come with issue 4.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class NewEvent:
    """An event stored for the first time (replays never reach the domain)."""

    message_id: str
    person_id: str
    type: str
    event: str
    event_time: datetime
    traits: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfileState:
    person_id: str
    traits: Mapping[str, Any] = field(default_factory=dict)
    event_count: int = 0
    first_seen_at: datetime | None = None
    last_seen_at: datetime | None = None
    version: int = 0


@dataclass(frozen=True)
class Change:
    state: ProfileState
    # Field name -> new value, for the profile.changed announcement.
    changed: dict[str, Any]
    # The event that made the change (the latest one of the batch).
    trigger: NewEvent


def apply_events(current: ProfileState, events: Iterable[NewEvent]) -> Change | None:
    """The profile after ``events`` (all of ``current.person_id``), or None if there were none."""
    ordered = sorted(events, key=lambda e: (e.event_time, e.message_id))
    if not ordered:
        return None
    traits = dict(current.traits)
    changed: dict[str, Any] = {}
    for event in ordered:
        for key, value in event.traits.items():
            if traits.get(key) != value or key not in traits:
                traits[key] = value
                changed[f"traits.{key}"] = value
    first = min(filter(None, [current.first_seen_at, ordered[0].event_time]))
    last = max(filter(None, [current.last_seen_at, ordered[-1].event_time]))
    state = replace(
        current,
        traits=traits,
        event_count=current.event_count + len(ordered),
        first_seen_at=first,
        last_seen_at=last,
        version=current.version + 1,
    )
    changed["event_count"] = state.event_count
    if first != current.first_seen_at:
        changed["first_seen_time"] = first
    if last != current.last_seen_at:
        changed["last_seen_time"] = last
    return Change(state=state, changed=changed, trigger=ordered[-1])
