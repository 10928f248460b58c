"""SQL for the campaign schema. Every query is scoped by workspace_id."""

from __future__ import annotations

import asyncpg

from cdp_campaign.domain import Journey

_COLUMNS = "workspace_id, journey_id, display_name, description, definition, state, etag, created_at, updated_at"


def _journey(row: asyncpg.Record) -> Journey:
    return Journey(**dict(row))


async def insert(conn: asyncpg.Connection, journey: Journey) -> Journey | None:
    """The stored journey, or None when the id is taken."""
    row = await conn.fetchrow(
        f"""INSERT INTO journeys (workspace_id, journey_id, display_name, description, definition, state, etag)
            VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING {_COLUMNS}""",
        journey.workspace_id,
        journey.journey_id,
        journey.display_name,
        journey.description,
        journey.definition,
        journey.state,
        journey.etag,
    )
    return _journey(row) if row else None


async def get(
    conn: asyncpg.Connection, workspace_id: str, journey_id: str, *, for_update: bool = False
) -> Journey | None:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM journeys WHERE workspace_id = $1 AND journey_id = $2{lock}", workspace_id, journey_id
    )
    return _journey(row) if row else None


async def update(conn: asyncpg.Connection, journey: Journey) -> Journey:
    row = await conn.fetchrow(
        f"""UPDATE journeys SET display_name = $3, description = $4, definition = $5, etag = $6, updated_at = now()
            WHERE workspace_id = $1 AND journey_id = $2 RETURNING {_COLUMNS}""",
        journey.workspace_id,
        journey.journey_id,
        journey.display_name,
        journey.description,
        journey.definition,
        journey.etag,
    )
    return _journey(row)


async def delete(conn: asyncpg.Connection, workspace_id: str, journey_id: str) -> None:
    await conn.execute("DELETE FROM journeys WHERE workspace_id = $1 AND journey_id = $2", workspace_id, journey_id)


async def list_page(conn: asyncpg.Connection, workspace_id: str, *, after: str, limit: int) -> list[Journey]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM journeys WHERE workspace_id = $1 AND journey_id > $2
            ORDER BY journey_id LIMIT $3""",
        workspace_id,
        after,
        limit,
    )
    return [_journey(r) for r in rows]
