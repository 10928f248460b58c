"""SQL of the stored-event upkeep (retention of old partitions, the PII rewrite pass)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import orjson

from cdp_profile.repository import _EVENT_COLUMNS, EventRow, _event_row

# Session advisory lock keys: one replica at a time drops partitions.
RETENTION_LEASE = 0x70726F66_0002
# DETACH ... CONCURRENTLY waits for every transaction that may still see the partition.
DETACH_TIMEOUT = 600.0


def month_end(name: str) -> datetime | None:
    """Where the monthly partition ``events_pYYYYMM`` ends (None for any other name)."""
    if len(name) != 14 or not name.startswith("events_p") or not name[8:].isdigit():
        return None
    year, month = int(name[8:12]), int(name[12:14])
    return datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)


async def old_partitions(conn: asyncpg.Connection, cutoff: datetime) -> list[tuple[str, bool, bool, float]]:
    """(name, attached, detach pending, estimated rows) of the monthly event tables wholly before
    ``cutoff``, oldest first, attached or left detached by an interrupted run."""
    rows = await conn.fetch(
        """SELECT c.relname, i.inhrelid IS NOT NULL AS attached, coalesce(i.inhdetachpending, false) AS pending,
                  greatest(c.reltuples, 0) AS estimate
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()
           LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = 'events'::regclass
           WHERE c.relkind = 'r' AND c.relname ~ '^events_p[0-9]{6}$'
           ORDER BY c.relname"""
    )
    found = []
    for row in rows:
        end = month_end(row["relname"])
        if end is not None and end <= cutoff:
            found.append((row["relname"], row["attached"], row["pending"], float(row["estimate"])))
    return found


async def detach_partition(conn: asyncpg.Connection, name: str, *, pending: bool) -> None:
    """Detach without blocking readers or writers of ``events`` (outside any transaction):
    CONCURRENTLY takes only SHARE UPDATE EXCLUSIVE and waits for the transactions that may still
    see the partition; FINALIZE completes one an interrupted run left pending."""
    how = "FINALIZE" if pending else "CONCURRENTLY"
    await conn.execute(f'ALTER TABLE events DETACH PARTITION "{name}" {how}', timeout=DETACH_TIMEOUT)


async def drop_table(conn: asyncpg.Connection, name: str) -> None:
    await conn.execute(f'DROP TABLE IF EXISTS "{name}"')


async def history_blocks(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT pg_relation_size('events_history') / current_setting('block_size')::int")


async def delete_history_before(conn: asyncpg.Connection, cutoff: datetime, first_block: int, blocks: int) -> int:
    """Delete the rows of ``events_history`` (times before the first monthly partition:
    historical imports) older than ``cutoff`` in ``blocks`` pages from ``first_block`` (a TID
    range scan: each statement reads a bounded part of the table, none reads it all); returns how
    many."""
    status = await conn.execute(
        """DELETE FROM events_history
           WHERE ctid >= $1::text::tid AND ctid < $2::text::tid AND event_time < $3""",
        f"({first_block},0)",
        f"({first_block + blocks},0)",
        cutoff,
    )
    return int(status.split()[-1])


async def stored_events_of(conn: asyncpg.Connection, workspace_id: str, person_id: str) -> tuple[int, datetime | None]:
    """How many events of the person are stored, and the time of the oldest (a split tells from
    them what the retention dropped)."""
    row = await conn.fetchrow(
        "SELECT count(*) AS n, min(event_time) AS oldest FROM events WHERE workspace_id = $1 AND person_id = $2::uuid",
        workspace_id,
        person_id,
    )
    return row["n"], row["oldest"]


async def try_lock(conn: asyncpg.Connection, key: int) -> bool:
    return await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)


async def unlock(conn: asyncpg.Connection, key: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", key)


# The PII rewrite pass of stored events ---------------------------------------------------------


@dataclass(frozen=True)
class EventPass:
    rules: str
    workspace_id: str  # '' for every workspace
    after: tuple[str, str]


async def start_event_pass(conn: asyncpg.Connection, rules: str, workspace_id: str = "") -> None:
    await conn.execute(
        """INSERT INTO event_passes (rules, workspace_id, after_workspace) VALUES ($1, $2, $2)
           ON CONFLICT DO NOTHING""",
        rules,
        workspace_id,
    )


async def claim_event_pass(conn: asyncpg.Connection) -> EventPass | None:
    """The oldest unfinished pass, locked until commit (one replica at a time: None when another
    holds it or none is left)."""
    row = await conn.fetchrow(
        """SELECT rules, workspace_id, after_workspace, after_message FROM event_passes
           WHERE finished_at IS NULL ORDER BY started_at, rules LIMIT 1 FOR UPDATE SKIP LOCKED"""
    )
    if row is None:
        return None
    return EventPass(row["rules"], row["workspace_id"], (row["after_workspace"], row["after_message"]))


async def next_event_keys(conn: asyncpg.Connection, task: EventPass, limit: int) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        """SELECT workspace_id, message_id FROM event_keys
           WHERE (workspace_id, message_id) > ($1, $2) AND ($3 = '' OR workspace_id = $3)
           ORDER BY workspace_id, message_id LIMIT $4""",
        *task.after,
        task.workspace_id,
        limit,
    )
    return [(r["workspace_id"], r["message_id"]) for r in rows]


async def lock_events(conn: asyncpg.Connection, keys: Sequence[tuple[str, str]]) -> list[EventRow]:
    """The stored events of ``keys`` (found through event_keys: person and time lead to the
    partition and its index), locked until commit; events of dropped partitions are not found."""
    rows = await conn.fetch(
        f"""SELECT {", ".join("e." + c.strip() for c in _EVENT_COLUMNS.split(","))}
           FROM unnest($1::text[], $2::text[]) AS x(workspace_id, message_id)
           JOIN event_keys k ON k.workspace_id = x.workspace_id AND k.message_id = x.message_id
           JOIN events e ON e.workspace_id = k.workspace_id AND e.person_id = k.person_id
                        AND e.event_time = k.event_time AND e.message_id = k.message_id
           FOR UPDATE OF e""",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return [_event_row(r) for r in rows]


async def rewrite_events(conn: asyncpg.Connection, rows: Sequence[EventRow]) -> None:
    """Store the rewritten properties, context, traits and sealed part (the legacy column goes)."""
    await conn.execute(
        """UPDATE events e SET properties = x.properties, context = x.context, traits = x.traits::jsonb,
                               pii = x.pii, legacy = NULL
           FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::text[], $5::bytea[], $6::bytea[],
                       $7::text[], $8::bytea[])
                AS x(workspace_id, person_id, event_time, message_id, properties, context, traits, pii)
           WHERE e.workspace_id = x.workspace_id AND e.person_id = x.person_id
             AND e.event_time = x.event_time AND e.message_id = x.message_id""",
        [r.workspace_id for r in rows],
        [r.person_id for r in rows],
        [r.event_time for r in rows],
        [r.message_id for r in rows],
        [r.properties for r in rows],
        [r.context for r in rows],
        [orjson.dumps(r.traits).decode() if r.traits is not None else None for r in rows],
        [r.pii for r in rows],
    )


async def advance_event_pass(
    conn: asyncpg.Connection, rules: str, after: tuple[str, str] | None, *, examined: int, rewritten: int
) -> tuple[int, int]:
    """Move the pass on to ``after``, or finish it (None); returns its totals so far."""
    row = await conn.fetchrow(
        """UPDATE event_passes
           SET after_workspace = coalesce($2, after_workspace), after_message = coalesce($3, after_message),
               examined = examined + $4, rewritten = rewritten + $5,
               finished_at = CASE WHEN $2::text IS NULL THEN now() END
           WHERE rules = $1 RETURNING examined, rewritten""",
        rules,
        after[0] if after else None,
        after[1] if after else None,
        examined,
        rewritten,
    )
    return row["examined"], row["rewritten"]
