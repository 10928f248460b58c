"""SQL of the stored-event upkeep (retention of old partitions, the PII rewrite pass)."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

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


async def delete_history_before(conn: asyncpg.Connection, cutoff: datetime, limit: int) -> int:
    """Delete up to ``limit`` rows of ``events_history`` (times before the first monthly
    partition: historical imports) older than ``cutoff``; returns how many."""
    status = await conn.execute(
        """DELETE FROM events_history WHERE ctid = ANY(ARRAY(
               SELECT ctid FROM events_history WHERE event_time < $1 LIMIT $2))""",
        cutoff,
        limit,
    )
    return int(status.split()[-1])


async def try_lock(conn: asyncpg.Connection, key: int) -> bool:
    return await conn.fetchval("SELECT pg_try_advisory_lock($1)", key)


async def unlock(conn: asyncpg.Connection, key: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", key)
