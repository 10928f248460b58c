"""SQL of the bulk import: the checkpoint row, the staged rows (COPY), the rejected rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class ImportRow:
    workspace_id: str
    import_id: str
    kind: str
    format: str
    source_name: str
    digest: str
    staged_through: int
    rows_staged: int
    rows_applied: int
    rows_rejected: int
    state: str
    start_time: datetime
    end_time: datetime | None


_FIELDS = ", ".join(ImportRow.__dataclass_fields__)


async def start(
    conn: asyncpg.Connection,
    workspace_id: str,
    import_id: str,
    kind: str,
    fmt: str,
    source_name: str,
    digest: str,
    now: datetime,
) -> ImportRow:
    """The import's row: created, or the one an earlier run left (to resume or to report)."""
    await conn.execute(
        """INSERT INTO imports (workspace_id, import_id, kind, format, source_name, digest, start_time)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (workspace_id, import_id) DO NOTHING""",
        workspace_id,
        import_id,
        kind,
        fmt,
        source_name,
        digest,
        now,
    )
    found = await get(conn, workspace_id, import_id)
    assert found is not None
    return found


async def get(conn: asyncpg.Connection, workspace_id: str, import_id: str) -> ImportRow | None:
    row = await conn.fetchrow(
        f"SELECT {_FIELDS} FROM imports WHERE workspace_id = $1 AND import_id = $2", workspace_id, import_id
    )
    return ImportRow(**dict(row)) if row else None


async def stage(
    conn: asyncpg.Connection,
    workspace_id: str,
    import_id: str,
    rows: Sequence[tuple[int, str | None, bytes, bool]],
    rejects: Sequence[tuple[int, str, bytes]],
    through: int,
) -> None:
    """COPY (line, person id, payload, sealed) rows in, record the rejections, and move the
    checkpoint to ``through`` (the caller's transaction holds all three together)."""
    if rows:
        await conn.copy_records_to_table(
            "import_rows",
            records=[
                (workspace_id, import_id, line, person, payload, sealed) for line, person, payload, sealed in rows
            ],
            columns=["workspace_id", "import_id", "line", "person_id", "payload", "sealed"],
        )
    if rejects:
        await conn.executemany(
            """INSERT INTO import_rejects (workspace_id, import_id, line, reason, raw) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT DO NOTHING""",
            [(workspace_id, import_id, line, reason, raw) for line, reason, raw in rejects],
        )
    await conn.execute(
        """UPDATE imports SET staged_through = $3, rows_staged = rows_staged + $4, rows_rejected = rows_rejected + $5
           WHERE workspace_id = $1 AND import_id = $2""",
        workspace_id,
        import_id,
        through,
        len(rows),
        len(rejects),
    )


async def staged(conn: asyncpg.Connection, workspace_id: str, import_id: str, limit: int) -> list[asyncpg.Record]:
    """The next staged rows, in file order."""
    return await conn.fetch(
        """SELECT line, person_id::text, payload, sealed FROM import_rows
           WHERE workspace_id = $1 AND import_id = $2 ORDER BY line LIMIT $3""",
        workspace_id,
        import_id,
        limit,
    )


async def applied(conn: asyncpg.Connection, workspace_id: str, import_id: str, lines: Sequence[int]) -> None:
    """Staged rows applied: deleted, and counted (in the transaction that applied them)."""
    await conn.execute(
        "DELETE FROM import_rows WHERE workspace_id = $1 AND import_id = $2 AND line = ANY($3::bigint[])",
        workspace_id,
        import_id,
        list(lines),
    )
    await conn.execute(
        "UPDATE imports SET rows_applied = rows_applied + $3 WHERE workspace_id = $1 AND import_id = $2",
        workspace_id,
        import_id,
        len(lines),
    )


async def finish(conn: asyncpg.Connection, workspace_id: str, import_id: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE imports SET state = 'done', end_time = $3 WHERE workspace_id = $1 AND import_id = $2",
        workspace_id,
        import_id,
        now,
    )


async def rejects(conn: asyncpg.Connection, workspace_id: str, import_id: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT line, reason, raw FROM import_rejects WHERE workspace_id = $1 AND import_id = $2 ORDER BY line",
        workspace_id,
        import_id,
    )
