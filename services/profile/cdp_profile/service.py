"""Profile use cases, one transaction each."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import asyncpg
from google.protobuf import struct_pb2

from cdp.events.v1 import events_pb2
from cdp_profile import repository
from cdp_profile.domain import NewEvent, ProfileState, apply_events
from cdp_profile.repository import EventRow, ProfileRecord
from cdpkit import outbox
from cdpkit.bus import PROFILE, BusNames
from cdpkit.errors import NotFound
from cdpkit.pagination import decode_token, encode_token, page_size

RECENT_EVENTS = 20


def _json_value(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


class ProfileService:
    def __init__(self, pool: asyncpg.Pool, names: BusNames) -> None:
        self._pool = pool
        self._names = names

    async def record_events(self, rows: Sequence[EventRow], traits: dict[tuple[str, str], dict]) -> int:
        """Store events once and update their profiles; returns how many events were new.

        ``traits`` maps (workspace_id, message_id) to the traits an identify event sets.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            new_keys = await repository.insert_new_events(conn, rows)
            fresh: dict[str, dict[str, list[NewEvent]]] = defaultdict(lambda: defaultdict(list))
            for row in rows:
                key = (row.workspace_id, row.message_id)
                if key in new_keys:
                    new_keys.discard(key)  # a message id repeated inside one batch counts once
                    fresh[row.workspace_id][row.person_id].append(
                        NewEvent(
                            row.message_id, row.person_id, row.type, row.event, row.event_time, traits.get(key, {})
                        )
                    )
            counted = 0
            for workspace_id in sorted(fresh):
                by_person = fresh[workspace_id]
                current = await repository.lock_profiles(conn, workspace_id, sorted(by_person))
                changes = [
                    apply_events(current.get(person_id) or ProfileState(person_id), events)
                    for person_id, events in sorted(by_person.items())
                ]
                await repository.save_profiles(conn, workspace_id, [c.state for c in changes if c])
                await outbox.enqueue_many(conn, [self._announcement(workspace_id, c) for c in changes if c])
                counted += sum(len(events) for events in by_person.values())
            return counted

    def _announcement(self, workspace_id: str, change) -> tuple[str, str, str, bytes]:
        state = change.state
        values = struct_pb2.Struct()
        values.update({k: _json_value(v) for k, v in change.changed.items()})
        message = events_pb2.ProfileChanged(
            workspace_id=workspace_id,
            person_id=state.person_id,
            changed_fields=sorted(change.changed),
            values=values,
            trigger_message_id=change.trigger.message_id,
            trigger_event=change.trigger.event,
            version=state.version,
        )
        message.change_time.GetCurrentTime()
        subject = self._names.partitioned(PROFILE, state.person_id)
        return (
            workspace_id,
            subject,
            f"profile:{workspace_id}:{state.person_id}:{state.version}",
            message.SerializeToString(),
        )

    async def get_profile(self, workspace_id: str, person_id: str) -> tuple[ProfileRecord, list[EventRow]]:
        async with self._pool.acquire() as conn:
            record = await repository.get_profile(conn, workspace_id, person_id)
            if record is None:
                raise NotFound(f"profile {person_id} not found")
            recent = await repository.list_events(conn, workspace_id, person_id, limit=RECENT_EVENTS)
        return record, recent

    async def list_events(
        self, workspace_id: str, person_id: str, requested_size: int, token: str
    ) -> tuple[list[EventRow], str]:
        size = page_size(requested_size)
        scope = f"{workspace_id}/{person_id}"
        position = decode_token(token, scope=scope)
        before = (datetime.fromisoformat(position["t"]), position["m"]) if position else None
        async with self._pool.acquire() as conn:
            rows = await repository.list_events(conn, workspace_id, person_id, limit=size + 1, before=before)
        next_token = ""
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            next_token = encode_token({"t": last.event_time.isoformat(), "m": last.message_id}, scope=scope)
        return rows, next_token
