"""SQL for the gateway schema. Every statement is scoped by workspace except the key lookup,
which is by the hash of a secret that belongs to exactly one workspace."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from cdp_gateway.keys import KeyRecord, Principal

_KEY_COLUMNS = """key_id, workspace_id, kind, scopes, display_name, rate_limit, display_hint, created_at,
                  rotated_at, previous_expires_at, revoked_at"""


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
    display_name: str = "",
    rate_limit: int = 0,
) -> KeyRecord | None:
    """The new key, or None when ``key_id`` is taken in the workspace."""
    row = await conn.fetchrow(
        f"""INSERT INTO api_keys (key_id, workspace_id, kind, scopes, key_hash, display_hint, display_name, rate_limit)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (workspace_id, key_id) DO NOTHING
            RETURNING {_KEY_COLUMNS}""",
        key_id,
        workspace_id,
        kind,
        list(scopes),
        key_hash,
        hint,
        display_name,
        rate_limit,
    )
    return _record(row) if row else None


async def principal_by_hash(conn: asyncpg.Connection, key_hash: bytes) -> Principal | None:
    """The principal of an active key, by its current secret or by the previous one while that
    is still in its grace period after a rotation."""
    row = await conn.fetchrow(
        """SELECT key_id, workspace_id, kind, scopes, rate_limit FROM api_keys
           WHERE revoked_at IS NULL
             AND (key_hash = $1 OR (previous_key_hash = $1 AND previous_expires_at > now()))""",
        key_hash,
    )
    if row is None:
        return None
    return Principal(row["workspace_id"], row["key_id"], row["kind"], frozenset(row["scopes"]), row["rate_limit"])


async def get_key(conn: asyncpg.Connection, workspace_id: str, key_id: str) -> KeyRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE workspace_id = $1 AND key_id = $2", workspace_id, key_id
    )
    return _record(row) if row else None


async def list_keys(
    conn: asyncpg.Connection,
    workspace_id: str,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
    show_revoked: bool,
) -> list[KeyRecord]:
    """Keys oldest first, keyset-paginated on (created_at, key_id)."""
    rows = await conn.fetch(
        f"""SELECT {_KEY_COLUMNS} FROM api_keys
            WHERE workspace_id = $1
              AND ($2::boolean OR revoked_at IS NULL)
              AND ($3::timestamptz IS NULL OR (created_at, key_id) > ($3, $4))
            ORDER BY created_at, key_id
            LIMIT $5""",
        workspace_id,
        show_revoked,
        after[0] if after else None,
        after[1] if after else "",
        limit,
    )
    return [_record(r) for r in rows]


async def rotate_key(
    conn: asyncpg.Connection, workspace_id: str, key_id: str, *, key_hash: bytes, hint: str, grace_seconds: float
) -> KeyRecord | None:
    """Replace the secret of an active key; the old one stays valid for ``grace_seconds``."""
    row = await conn.fetchrow(
        f"""UPDATE api_keys
            SET previous_key_hash = CASE WHEN $5 > 0 THEN key_hash END,
                previous_expires_at = CASE WHEN $5 > 0 THEN now() + make_interval(secs => $5) END,
                key_hash = $3, display_hint = $4, rotated_at = now()
            WHERE workspace_id = $1 AND key_id = $2 AND revoked_at IS NULL
            RETURNING {_KEY_COLUMNS}""",
        workspace_id,
        key_id,
        key_hash,
        hint,
        float(grace_seconds),
    )
    return _record(row) if row else None


async def revoke_key(conn: asyncpg.Connection, workspace_id: str, key_id: str) -> KeyRecord | None:
    """Revoke (idempotent): the key as it is afterwards, or None when there is no such key."""
    row = await conn.fetchrow(
        f"""UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()), previous_expires_at = NULL
            WHERE workspace_id = $1 AND key_id = $2
            RETURNING {_KEY_COLUMNS}""",
        workspace_id,
        key_id,
    )
    return _record(row) if row else None


def _record(row: asyncpg.Record) -> KeyRecord:
    return KeyRecord(
        key_id=row["key_id"],
        workspace_id=row["workspace_id"],
        kind=row["kind"],
        scopes=tuple(row["scopes"]),
        display_name=row["display_name"],
        rate_limit=row["rate_limit"],
        display_hint=row["display_hint"],
        created_at=row["created_at"],
        rotated_at=row["rotated_at"],
        previous_expires_at=row["previous_expires_at"],
        revoked_at=row["revoked_at"],
    )
