"""SQL for the profile schema. Every query is scoped by workspace_id."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from cdp_profile.domain import ProfileState


@dataclass(frozen=True)
class EventRow:
    workspace_id: str
    message_id: str
    person_id: str
    type: str
    event: str
    properties: dict[str, Any]
    context: dict[str, Any]
    event_time: datetime
    received_at: datetime


@dataclass(frozen=True)
class ProfileRecord:
    state: ProfileState
    created_at: datetime
    updated_at: datetime


async def insert_new_events(conn: asyncpg.Connection, rows: Sequence[EventRow]) -> set[tuple[str, str]]:
    """Insert events not stored yet; returns the (workspace_id, message_id) pairs that were new."""
    if not rows:
        return set()
    inserted = await conn.fetch(
        """INSERT INTO events (workspace_id, message_id, person_id, type, event, properties, context,
                               event_time, received_at)
           SELECT w, m, p, t, e, pr::jsonb, c::jsonb, et, rt
           FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::text[],
                       $8::timestamptz[], $9::timestamptz[]) AS x(w, m, p, t, e, pr, c, et, rt)
           ON CONFLICT (workspace_id, message_id) DO NOTHING
           RETURNING workspace_id, message_id""",
        [r.workspace_id for r in rows],
        [r.message_id for r in rows],
        [r.person_id for r in rows],
        [r.type for r in rows],
        [r.event for r in rows],
        [json.dumps(r.properties) for r in rows],
        [json.dumps(r.context) for r in rows],
        [r.event_time for r in rows],
        [r.received_at for r in rows],
    )
    return {(r["workspace_id"], r["message_id"]) for r in inserted}


def _state(row: asyncpg.Record) -> ProfileState:
    return ProfileState(
        person_id=str(row["person_id"]),
        traits=row["traits"],
        event_count=row["event_count"],
        first_seen_at=row["first_seen_at"],
        last_seen_at=row["last_seen_at"],
        version=row["version"],
    )


async def lock_profiles(
    conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]
) -> dict[str, ProfileState]:
    """Current state of the existing profiles among ``person_ids``, locked until commit.

    Rows are locked in person_id order so concurrent batches cannot deadlock.
    """
    rows = await conn.fetch(
        """SELECT person_id, traits, event_count, first_seen_at, last_seen_at, version FROM profiles
           WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])
           ORDER BY person_id FOR UPDATE""",
        workspace_id,
        list(person_ids),
    )
    return {str(r["person_id"]): _state(r) for r in rows}


async def save_profiles(conn: asyncpg.Connection, workspace_id: str, states: Sequence[ProfileState]) -> None:
    if not states:
        return
    await conn.execute(
        """INSERT INTO profiles (workspace_id, person_id, traits, event_count, first_seen_at, last_seen_at, version)
           SELECT $1, p, t::jsonb, c, f, l, v
           FROM unnest($2::uuid[], $3::text[], $4::bigint[], $5::timestamptz[], $6::timestamptz[], $7::bigint[])
                AS x(p, t, c, f, l, v)
           ON CONFLICT (workspace_id, person_id) DO UPDATE SET
               traits = excluded.traits, event_count = excluded.event_count,
               first_seen_at = excluded.first_seen_at, last_seen_at = excluded.last_seen_at,
               version = excluded.version, updated_at = now()""",
        workspace_id,
        [s.person_id for s in states],
        [json.dumps(s.traits) for s in states],
        [s.event_count for s in states],
        [s.first_seen_at for s in states],
        [s.last_seen_at for s in states],
        [s.version for s in states],
    )


async def get_profile(conn: asyncpg.Connection, workspace_id: str, person_id: str) -> ProfileRecord | None:
    row = await conn.fetchrow(
        """SELECT person_id, traits, event_count, first_seen_at, last_seen_at, version, created_at, updated_at
           FROM profiles WHERE workspace_id = $1 AND person_id = $2::uuid""",
        workspace_id,
        person_id,
    )
    if row is None:
        return None
    return ProfileRecord(state=_state(row), created_at=row["created_at"], updated_at=row["updated_at"])


async def list_events(
    conn: asyncpg.Connection,
    workspace_id: str,
    person_id: str,
    *,
    limit: int,
    before: tuple[datetime, str] | None = None,
) -> list[EventRow]:
    """Events of a person, newest first, strictly after the keyset position ``before``."""
    rows = await conn.fetch(
        """SELECT workspace_id, message_id, person_id::text AS person_id, type, event, properties, context,
                  event_time, received_at
           FROM events
           WHERE workspace_id = $1 AND person_id = $2::uuid
             AND ($3::timestamptz IS NULL OR (event_time, message_id) < ($3, $4))
           ORDER BY event_time DESC, message_id DESC
           LIMIT $5""",
        workspace_id,
        person_id,
        before[0] if before else None,
        before[1] if before else "",
        limit,
    )
    return [EventRow(**dict(r)) for r in rows]
