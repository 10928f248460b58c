"""SQL for the gateway schema."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from cdp_gateway.keys import Principal


async def create_workspace(conn: asyncpg.Connection, workspace_id: str, display_name: str) -> bool:
    """True when created, False when it already existed."""
    status = await conn.execute(
        "INSERT INTO workspaces (workspace_id, display_name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        workspace_id,
        display_name,
    )
    return status.endswith(" 1")


async def workspace_exists(conn: asyncpg.Connection, workspace_id: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM workspaces WHERE workspace_id = $1", workspace_id))


async def insert_key(
    conn: asyncpg.Connection,
    *,
    key_id: str,
    workspace_id: str,
    kind: str,
    scopes: Sequence[str],
    key_hash: bytes,
    hint: str,
) -> None:
    await conn.execute(
        """INSERT INTO api_keys (key_id, workspace_id, kind, scopes, key_hash, display_hint)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        key_id,
        workspace_id,
        kind,
        list(scopes),
        key_hash,
        hint,
    )


async def principal_by_hash(conn: asyncpg.Connection, key_hash: bytes) -> Principal | None:
    row = await conn.fetchrow(
        "SELECT key_id, workspace_id, kind, scopes FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL", key_hash
    )
    if row is None:
        return None
    return Principal(row["workspace_id"], row["key_id"], row["kind"], frozenset(row["scopes"]))


async def revoke_key(conn: asyncpg.Connection, workspace_id: str, key_id: str) -> bool:
    status = await conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE workspace_id = $1 AND key_id = $2 AND revoked_at IS NULL",
        workspace_id,
        key_id,
    )
    return status.endswith(" 1")
