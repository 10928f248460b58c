"""SQL for the identity schema. Every query is scoped by workspace_id."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from cdp_identity.domain import Identifier


@dataclass(frozen=True)
class PersonRecord:
    person_id: str
    created_at: datetime
    updated_at: datetime
    identifiers: tuple[Identifier, ...]


async def owners(
    conn: asyncpg.Connection, workspace_id: str, identifiers: Iterable[Identifier]
) -> dict[Identifier, str]:
    """Who holds each of ``identifiers`` (absent keys: nobody)."""
    wanted = list(identifiers)
    if not wanted:
        return {}
    rows = await conn.fetch(
        """SELECT i.id_type, i.id_value, i.person_id::text AS person_id
           FROM identifiers i
           JOIN unnest($2::text[], $3::text[]) AS w(id_type, id_value)
             ON i.id_type = w.id_type AND i.id_value = w.id_value
           WHERE i.workspace_id = $1""",
        workspace_id,
        [i.type for i in wanted],
        [i.value for i in wanted],
    )
    return {Identifier(r["id_type"], r["id_value"]): r["person_id"] for r in rows}


async def lock_workspace_links(conn: asyncpg.Connection, workspace_id: str) -> None:
    """Serialise creation of new links in one workspace until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('identity-links:' || $1, 0))", workspace_id)


async def insert_persons(conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]) -> None:
    if person_ids:
        await conn.execute(
            "INSERT INTO persons (workspace_id, person_id) SELECT $1, unnest($2::uuid[])",
            workspace_id,
            list(person_ids),
        )


async def insert_identifiers(
    conn: asyncpg.Connection, workspace_id: str, links: Sequence[tuple[Identifier, str, str | None]]
) -> None:
    """Attach identifiers: rows of (identifier, person_id, source message id)."""
    if not links:
        return
    await conn.execute(
        """INSERT INTO identifiers (workspace_id, id_type, id_value, person_id, source_message_id)
           SELECT $1, t, v, p, m FROM unnest($2::text[], $3::text[], $4::uuid[], $5::text[]) AS x(t, v, p, m)""",
        workspace_id,
        [i.type for i, _, _ in links],
        [i.value for i, _, _ in links],
        [p for _, p, _ in links],
        [m for _, _, m in links],
    )


async def touch_persons(conn: asyncpg.Connection, workspace_id: str, person_ids: Sequence[str]) -> None:
    if person_ids:
        await conn.execute(
            "UPDATE persons SET updated_at = now() WHERE workspace_id = $1 AND person_id = ANY($2::uuid[])",
            workspace_id,
            list(person_ids),
        )


async def get_person(conn: asyncpg.Connection, workspace_id: str, person_id: str) -> PersonRecord | None:
    row = await conn.fetchrow(
        "SELECT created_at, updated_at FROM persons WHERE workspace_id = $1 AND person_id = $2::uuid",
        workspace_id,
        person_id,
    )
    if row is None:
        return None
    links = await conn.fetch(
        """SELECT id_type, id_value FROM identifiers WHERE workspace_id = $1 AND person_id = $2::uuid
           ORDER BY id_type, id_value""",
        workspace_id,
        person_id,
    )
    return PersonRecord(
        person_id=person_id,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        identifiers=tuple(Identifier(r["id_type"], r["id_value"]) for r in links),
    )
