"""asyncpg pool for one service schema.

Each service owns exactly one Postgres schema; its pool sets ``search_path`` to it, so the
repositories write plain table names and can never touch another service's tables by accident.
Use it as ``async with pool.acquire() as conn, conn.transaction(): ...``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

import asyncpg

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(schema: str) -> str:
    if not _IDENTIFIER.match(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    return schema


async def _init_connection(conn: asyncpg.Connection, decoder: Callable[[str], Any] = json.loads) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=decoder, schema="pg_catalog")


async def create_pool(
    dsn: str,
    schema: str,
    *,
    application_name: str,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout: float = 30.0,
    json_decoder: Callable[[str], Any] = json.loads,
    reset_session: bool = True,
) -> asyncpg.Pool:
    """A pool whose connections live in ``schema`` and decode json/jsonb to Python values
    (with ``json_decoder``: e.g. ``functools.partial(json.loads, parse_float=Decimal)``).

    ``reset_session=False``: a released connection is not reset beyond rolling back an open
    transaction (asyncpg's default reset is one more round trip per use: advisory unlocks,
    ``UNLISTEN``, ``RESET ALL``); only for pools whose users never leave session state behind
    (session advisory locks, listeners, ``SET`` without ``LOCAL``), e.g. a pool of plain reads."""
    check_schema_name(schema)
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        init=functools.partial(_init_connection, decoder=json_decoder),
        reset=None if reset_session else _keep_session,
        server_settings={"search_path": schema, "application_name": application_name, "timezone": "UTC"},
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset (asyncpg has rolled back any open transaction before calling this)."""


async def ping(pool: asyncpg.Pool, timeout: float = 2.0) -> bool:
    """True when the database answers a trivial query within ``timeout`` seconds."""
    try:
        async with pool.acquire(timeout=timeout) as conn:
            return await conn.fetchval("SELECT 1", timeout=timeout) == 1
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return False
