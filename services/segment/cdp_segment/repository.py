"""SQL for the segment schema. Every query is scoped by workspace_id."""

from __future__ import annotations

import asyncpg

from cdp_segment.domain import Segment

_COLUMNS = "workspace_id, segment_id, display_name, description, rule, etag, created_at, updated_at"


def _segment(row: asyncpg.Record) -> Segment:
    return Segment(**dict(row))


async def insert(conn: asyncpg.Connection, segment: Segment) -> Segment | None:
    """The stored segment, or None when the id is taken."""
    row = await conn.fetchrow(
        f"""INSERT INTO segments (workspace_id, segment_id, display_name, description, rule, etag)
            VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING {_COLUMNS}""",
        segment.workspace_id,
        segment.segment_id,
        segment.display_name,
        segment.description,
        segment.rule,
        segment.etag,
    )
    return _segment(row) if row else None


async def get(
    conn: asyncpg.Connection, workspace_id: str, segment_id: str, *, for_update: bool = False
) -> Segment | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM segments WHERE workspace_id = $1 AND segment_id = $2{lock}", workspace_id, segment_id
    )
    return _segment(row) if row else None


async def update(conn: asyncpg.Connection, segment: Segment) -> Segment:
    row = await conn.fetchrow(
        f"""UPDATE segments SET display_name = $3, description = $4, rule = $5, etag = $6, updated_at = now()
            WHERE workspace_id = $1 AND segment_id = $2 RETURNING {_COLUMNS}""",
        segment.workspace_id,
        segment.segment_id,
        segment.display_name,
        segment.description,
        segment.rule,
        segment.etag,
    )
    return _segment(row)


async def delete(conn: asyncpg.Connection, workspace_id: str, segment_id: str) -> None:
    await conn.execute("DELETE FROM segments WHERE workspace_id = $1 AND segment_id = $2", workspace_id, segment_id)


async def list_page(conn: asyncpg.Connection, workspace_id: str, *, after: str, limit: int) -> list[Segment]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM segments WHERE workspace_id = $1 AND segment_id > $2
            ORDER BY segment_id LIMIT $3""",
        workspace_id,
        after,
        limit,
    )
    return [_segment(r) for r in rows]
